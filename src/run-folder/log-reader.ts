import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMergedLine, type MergedLine } from './log-format.js';
import { launcherState, MERGED_LOG_FILE, RUN_RECORD_FILE, type RunRecord } from './record.js';

/** Reading merged.log of a run folder: filtered, tailed, and followed while the run goes on. */

export interface LogFilter {
  labels?: string[];
  host?: string;
  /** Tested against the rank's own text, not npurun's prefix. */
  grep?: RegExp;
  /** ISO time: lines that arrived at or after it. */
  since?: string;
  /** ISO time: lines that arrived before it. */
  until?: string;
}

export function lineMatches(line: MergedLine, filter: LogFilter): boolean {
  if (filter.labels && !filter.labels.includes(line.label)) return false;
  if (filter.host !== undefined && line.host !== filter.host) return false;
  if (filter.since !== undefined && line.time < filter.since) return false;
  if (filter.until !== undefined && line.time >= filter.until) return false;
  if (filter.grep && !filter.grep.test(line.line)) return false;
  return true;
}

const READ_CHUNK = 1024 * 1024;

/** Reads a growing file from where it stopped last time, in whole lines; a partial last line waits. */
export class FileTail {
  private handle: FileHandle | undefined;
  private offset = 0;
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');
  private readonly buffer = Buffer.alloc(READ_CHUNK);

  constructor(private readonly path: string) {}

  /** Calls `onLines` with each batch of new whole lines until the current end of the file; returns how many. */
  async readNew(onLines: (lines: string[]) => Promise<void>): Promise<number> {
    if (!this.handle) {
      try {
        this.handle = await open(this.path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw err;
      }
    }
    let count = 0;
    for (;;) {
      const { bytesRead } = await this.handle.read(this.buffer, 0, READ_CHUNK, this.offset);
      if (bytesRead === 0) return count;
      this.offset += bytesRead;
      const parts = (this.partial + this.decoder.write(this.buffer.subarray(0, bytesRead))).split('\n');
      this.partial = parts.pop() ?? '';
      count += parts.length;
      if (parts.length > 0) await onLines(parts);
    }
  }

  /** The writer is gone: a last line it never finished is still a line. */
  rest(): string[] {
    const last = this.partial + this.decoder.end();
    this.partial = '';
    return last === '' ? [] : [last];
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

export interface ReadLogOptions {
  filter: LogFilter;
  /** Only the last N matching lines already in the file (then, with follow, everything new). */
  tail?: number;
  follow?: boolean;
  /** Milliseconds between looks at a followed file. */
  pollMs?: number;
  /** With follow: stop once the launcher is gone and the file has not grown for this long. */
  goneAfterMs?: number;
}

/** Why reading stopped: the file's end (no follow), the run finished, or its launcher died. */
export type ReadLogEnd = 'end' | 'finished' | 'launcher-gone';

async function readRecord(runDir: string): Promise<RunRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(runDir, RUN_RECORD_FILE), 'utf8')) as RunRecord;
  } catch {
    return undefined;
  }
}

/**
 * Hands every matching line of the run's merged.log to `emit`, in file order. With follow, keeps
 * going until run.json says the run finished, or its launcher is gone and the file stopped growing.
 */
export async function readRunLog(
  runDir: string,
  opts: ReadLogOptions,
  emit: (lines: MergedLine[]) => Promise<void>,
): Promise<ReadLogEnd> {
  const tail = new FileTail(join(runDir, MERGED_LOG_FILE));
  const pick = (texts: string[]): MergedLine[] =>
    texts.map((t) => parseMergedLine(t)).filter((l): l is MergedLine => l !== undefined && lineMatches(l, opts.filter));
  const emitPicked = async (texts: string[]) => {
    const lines = pick(texts);
    if (lines.length > 0) await emit(lines);
  };
  try {
    if (opts.tail !== undefined) {
      const keep = opts.tail;
      let last: MergedLine[] = [];
      await tail.readNew(async (texts) => {
        if (keep === 0) return;
        for (const line of pick(texts)) last.push(line);
        // Trim now and then, not per batch: memory stays about 2N lines, copying stays rare.
        if (last.length > 2 * keep + 1024) last = last.slice(-keep);
      });
      if (keep > 0 && last.length > 0) await emit(last.slice(-keep));
    } else {
      await tail.readNew(emitPicked);
    }
    if (!opts.follow) {
      await emitPicked(tail.rest());
      return 'end';
    }
    const pollMs = opts.pollMs ?? 200;
    const goneAfterMs = opts.goneAfterMs ?? 2000;
    let lastGrowth = Date.now();
    for (;;) {
      if ((await tail.readNew(emitPicked)) > 0) {
        lastGrowth = Date.now();
        continue;
      }
      const record = await readRecord(runDir);
      if (record && record.status !== 'running') {
        // The recorder closes its files before it writes the final record: what is there is all.
        await tail.readNew(emitPicked);
        await emitPicked(tail.rest());
        return 'finished';
      }
      if (record && launcherState(record) === 'gone' && Date.now() - lastGrowth >= goneAfterMs) {
        await emitPicked(tail.rest());
        return 'launcher-gone';
      }
      await sleep(pollMs);
    }
  } finally {
    await tail.close();
  }
}

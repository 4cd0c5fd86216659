import { existsSync, readFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CkptFile } from './policy.js';

/**
 * Which checkpoint files a run owns: only those may be counted, pruned or offered for resume.
 *
 * Before any rank starts, every saving rank's directory is listed once (the baseline). A file is the
 * run's when it was not in the baseline, or when it was but has since changed (other size, mtime or,
 * where the transport reports it, inode): the run wrote it again under the same name. Everything
 * else (an earlier run's checkpoints, a user's `pretrained-1_1.ckpt`) is foreign and never touched.
 * If the baseline of a directory cannot be taken before the ranks start, it is taken at the first
 * listing that works: files written before it count as foreign (kept, never pruned).
 *
 * What the run owns is appended to checkpoints.jsonl in its run folder as it is seen, so `ckpt list`,
 * `ckpt latest` and `launch --resume` later use exactly that run's files.
 */
export const CKPT_INDEX_FILE = 'checkpoints.jsonl';

export type Verdict = 'complete' | 'partial';

export type IndexLine =
  /** The baseline of one saving rank's directory was taken; `foreign` files were there already. */
  | { t: 'rank'; label: string; rank: number; host: string; dir: string; foreign: number; at: string }
  /** A file this run wrote, as first seen. */
  | { t: 'owned'; label: string; name: string; size: number; mtime_ms: number; ino?: number }
  /** The verdict on an owned file, with the size and mtime it was judged at. */
  | { t: Verdict; label: string; name: string; size: number; mtime_ms: number; ino?: number }
  | { t: 'pruned'; label: string; name: string };

/** An owned file as last recorded, with its verdict when one was given. */
export interface OwnedFile extends CkptFile {
  verdict?: Verdict;
}

/** Same file as recorded: same size and mtime (and ino when both sides have one). */
export function sameFile(a: CkptFile, b: CkptFile): boolean {
  return (
    a.size === b.size && a.mtimeMs === b.mtimeMs && (a.ino === undefined || b.ino === undefined || a.ino === b.ino)
  );
}

/** One saving rank's directory: its baseline and the files the run owns there. */
export class RankOwnership {
  private baseline: Map<string, CkptFile> | undefined;
  readonly owned = new Map<string, OwnedFile>();

  get hasBaseline(): boolean {
    return this.baseline !== undefined;
  }

  /** Takes the baseline from a listing; returns how many files were there. */
  takeBaseline(listing: CkptFile[]): number {
    this.baseline = new Map(listing.map((f) => [f.name, f]));
    return listing.length;
  }

  /**
   * The files of a listing that the run owns; newly owned ones are returned in `added`. A file that
   * changed after its verdict loses it (written again).
   */
  claim(listing: CkptFile[]): { mine: CkptFile[]; added: CkptFile[] } {
    const mine: CkptFile[] = [];
    const added: CkptFile[] = [];
    if (!this.baseline) return { mine, added };
    const present = new Set(listing.map((f) => f.name));
    for (const name of this.owned.keys()) if (!present.has(name)) this.owned.delete(name);
    for (const f of listing) {
      const known = this.owned.get(f.name);
      if (known) {
        if (known.verdict && !sameFile(known, f)) this.owned.set(f.name, { ...f });
        mine.push(f);
        continue;
      }
      const before = this.baseline.get(f.name);
      if (before && sameFile(before, f)) continue;
      this.owned.set(f.name, { ...f });
      mine.push(f);
      added.push(f);
    }
    return { mine, added };
  }

  judge(f: CkptFile, verdict: Verdict): boolean {
    const known = this.owned.get(f.name);
    if (known?.verdict === verdict && sameFile(known, f)) return false;
    this.owned.set(f.name, { ...f, verdict });
    return true;
  }

  verdictOf(f: CkptFile): Verdict | undefined {
    const known = this.owned.get(f.name);
    return known && sameFile(known, f) ? known.verdict : undefined;
  }

  forget(name: string): void {
    this.owned.delete(name);
  }
}

export function fileLine(t: 'owned' | Verdict, label: string, f: CkptFile): IndexLine {
  return { t, label, name: f.name, size: f.size, mtime_ms: f.mtimeMs, ...(f.ino !== undefined ? { ino: f.ino } : {}) };
}

/** Appends lines to a run's checkpoints.jsonl: one write per batch, off the event loop. */
export async function appendIndex(file: string, lines: IndexLine[]): Promise<void> {
  if (lines.length === 0) return;
  await appendFile(file, lines.map((l) => JSON.stringify(l) + '\n').join(''));
}

/** What a run's checkpoints.jsonl says, per saving rank. */
export interface RecordedRank {
  label: string;
  rank: number;
  host: string;
  dir: string;
  foreign: number;
  files: Map<string, OwnedFile>;
}

/** Reads a run folder's checkpoints.jsonl; undefined when the run has none. A torn last line is skipped. */
export function readIndex(runDir: string): Map<string, RecordedRank> | undefined {
  const file = join(runDir, CKPT_INDEX_FILE);
  if (!existsSync(file)) return undefined;
  const ranks = new Map<string, RecordedRank>();
  for (const text of readFileSync(file, 'utf8').split('\n')) {
    if (text.trim() === '') continue;
    let line: IndexLine;
    try {
      line = JSON.parse(text) as IndexLine;
    } catch {
      continue;
    }
    if (line.t === 'rank') {
      ranks.set(line.label, {
        label: line.label,
        rank: line.rank,
        host: line.host,
        dir: line.dir,
        foreign: line.foreign,
        files: ranks.get(line.label)?.files ?? new Map<string, OwnedFile>(),
      });
      continue;
    }
    const r = ranks.get(line.label);
    if (!r) continue;
    if (line.t === 'pruned') r.files.delete(line.name);
    else {
      const f: OwnedFile = {
        name: line.name,
        size: line.size,
        mtimeMs: line.mtime_ms,
        ...(line.ino !== undefined ? { ino: line.ino } : {}),
      };
      r.files.set(line.name, line.t === 'owned' ? f : { ...f, verdict: line.t });
    }
  }
  return ranks;
}

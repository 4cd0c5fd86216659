import type { RankSpec } from '../plan/types.js';

/**
 * The line formats of a run folder, in one place so writers and readers agree.
 *
 * merged.log, one line per rank line, always with the time it arrived:
 *   `2025-05-01T10:00:00.123Z [3 server-b dev3] loss: 1.76`          (stdout)
 *   `2025-05-01T10:00:00.123Z [3 server-b dev3 stderr] Traceback...`  (stderr)
 *   `dev-` stands for a process without a device (msrun's scheduler).
 * logs/rank-<label>.log, what the rank printed (stdout and stderr, like `> log 2>&1`), with
 *   `[stderr] ` before stderr lines and, with --timestamps, the ISO time first.
 */

export type StreamName = 'stdout' | 'stderr';

export interface MergedLine {
  time: string;
  label: string;
  host: string;
  device: number | null;
  stream: StreamName;
  line: string;
}

/** Labels and host names go into space-separated, bracketed prefixes: keep them one token. */
function token(name: string): string {
  return name.replace(/[\s\]]/g, '_') || '_';
}

export function deviceToken(deviceId: number | null): string {
  return deviceId === null ? 'dev-' : `dev${deviceId}`;
}

/** `[3 server-b dev3] ` or `[3 server-b dev3 stderr] `. */
export function mergedPrefix(rank: Pick<RankSpec, 'label' | 'host' | 'deviceId'>, stream: StreamName): string {
  return `[${token(rank.label)} ${token(rank.host)} ${deviceToken(rank.deviceId)}${stream === 'stderr' ? ' stderr' : ''}] `;
}

const MERGED_LINE = /^(\S+) \[(\S+) (\S+) dev(\d+|-)( stderr)?\] (.*)$/s;

export function parseMergedLine(text: string): MergedLine | undefined {
  const m = MERGED_LINE.exec(text);
  if (!m) return undefined;
  return {
    time: m[1] as string,
    label: m[2] as string,
    host: m[3] as string,
    device: m[4] === '-' ? null : Number(m[4]),
    stream: m[5] ? 'stderr' : 'stdout',
    line: m[6] as string,
  };
}

export const STDERR_MARK = '[stderr] ';

/** One line of logs/rank-<label>.log, newline included. */
export function rankLogLine(line: string, stream: StreamName, time: string | undefined): string {
  return `${time === undefined ? '' : `${time} `}${stream === 'stderr' ? STDERR_MARK : ''}${line}\n`;
}

// Bright and normal colours that read on dark and light terminals; red is left for npurun's own errors.
const PALETTE = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94];

/** Whether console prefixes get colour: a terminal, and NO_COLOR (https://no-color.org) unset or empty. */
export function wantsColor(out: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): boolean {
  const tty = (out as { isTTY?: boolean }).isTTY === true;
  return tty && !(env.NO_COLOR !== undefined && env.NO_COLOR !== '');
}

/** Console prefixes `[ 3 server-b dev3] `, padded so the text of every shown rank starts in one column. */
export class ConsolePrefixes {
  private readonly prefixes = new Map<string, string>();

  constructor(ranks: Pick<RankSpec, 'label' | 'host' | 'deviceId'>[], color: boolean) {
    const labelWidth = Math.max(0, ...ranks.map((r) => token(r.label).length));
    const hostWidth = Math.max(0, ...ranks.map((r) => token(r.host).length));
    const deviceWidth = Math.max(0, ...ranks.map((r) => deviceToken(r.deviceId).length));
    ranks.forEach((r, i) => {
      const text = `[${token(r.label).padStart(labelWidth)} ${token(r.host).padEnd(hostWidth)} ${deviceToken(r.deviceId).padEnd(deviceWidth)}]`;
      this.prefixes.set(r.label, color ? `\x1b[${PALETTE[i % PALETTE.length]}m${text}\x1b[0m ` : `${text} `);
    });
  }

  /** undefined: the rank is not shown on the console. */
  of(label: string): string | undefined {
    return this.prefixes.get(label);
  }
}

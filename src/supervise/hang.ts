/**
 * Hang detection: when no rank has made progress for the hang timeout, the run is hung. Progress is a
 * line matching the job's pattern (default: the model zoo's `epoch[..]`, `iter[..]`, `step N` lines and
 * `{"npurun":"progress"}` lines). Which rank stopped first is told by when each last made progress and
 * by the stacks collected at the hang: usually all but one wait in a collective; the odd one out is
 * the culprit. Pure: the clock is passed in.
 */
export const DEFAULT_PROGRESS_PATTERN = String.raw`epoch\s*[\[:]\s*\d+|iter(ation)?\s*[\[:]\s*\d+|\bstep\s*[\[:=]?\s*\d+|"npurun"\s*:\s*"progress"`;

export interface HangFinding {
  /** Milliseconds since the newest progress of any rank. */
  silentMs: number;
  /** Ranks by their last progress, oldest first (ms since epoch; the start time for a rank with none). */
  order: { label: string; at: number }[];
}

/** Before the first progress line of any rank (imports, data loading, HCCL init) the timeout is this many times longer. */
export const STARTUP_FACTOR = 5;

export class HangWatch {
  private readonly last = new Map<string, number>();
  private readonly pattern: RegExp;
  private progressed = false;

  constructor(
    labels: string[],
    private readonly timeoutMs: number,
    pattern: string | undefined,
    now: number,
  ) {
    this.pattern = new RegExp(pattern ?? DEFAULT_PROGRESS_PATTERN, pattern ? '' : 'i');
    for (const l of labels) this.last.set(l, now);
  }

  /** A line a rank printed. */
  line(label: string, text: string, now: number): void {
    if (this.last.has(label) && this.pattern.test(text)) {
      this.last.set(label, now);
      this.progressed = true;
    }
  }

  /** A rank that ended is no longer expected to make progress. */
  ended(label: string): void {
    this.last.delete(label);
  }

  /** The hang, once no rank made progress for the timeout; undefined before. */
  check(now: number): HangFinding | undefined {
    if (this.last.size === 0) return undefined;
    const newest = Math.max(...this.last.values());
    if (now - newest < this.timeoutMs * (this.progressed ? 1 : STARTUP_FACTOR)) return undefined;
    return {
      silentMs: now - newest,
      order: [...this.last].map(([label, at]) => ({ label, at })).sort((a, b) => a.at - b.at),
    };
  }
}

export interface Frame {
  func: string;
  file: string;
  line: number;
}

const THREAD = /^(Current thread|Thread) 0x[0-9a-f]+ .*\(most recent call first\):$/;
const FRAME = /^\s+File "(.+)", line (\d+) in (.+)$/;

/**
 * The current thread's frames, innermost first, from what Python's faulthandler printed (the last dump
 * in the lines): `Current thread 0x... (most recent call first):` then `  File "x.py", line 9 in f`.
 */
export function pythonFrames(lines: string[]): Frame[] {
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = (lines[i] as string).replace(/^\[stderr\] /, '');
    if (THREAD.test(l) && (l.startsWith('Current thread') || start === -1)) {
      start = i;
      if (l.startsWith('Current thread')) break;
    }
  }
  if (start === -1) return [];
  const frames: Frame[] = [];
  for (const raw of lines.slice(start + 1)) {
    const m = FRAME.exec(raw.replace(/^\[stderr\] /, ''));
    if (!m) break;
    frames.push({ file: m[1] as string, line: Number(m[2]), func: m[3] as string });
  }
  return frames;
}

/**
 * The ranks to blame: the odd ones out by top frame when most ranks share one (they wait in the same
 * collective), else the ranks that stopped making progress first (within a second of the earliest).
 */
export function hangCulprits(finding: HangFinding, frames: Map<string, Frame[]>): { labels: string[]; why: string } {
  const top = new Map<string, string[]>();
  for (const [label, f] of frames) {
    const key = f[0]?.func;
    if (key === undefined) continue;
    top.set(key, [...(top.get(key) ?? []), label]);
  }
  const groups = [...top.values()].sort((a, b) => b.length - a.length);
  const biggest = groups[0];
  if (biggest && groups.length > 1 && biggest.length >= 2) {
    const odd = groups.slice(1).flat();
    if (odd.length < biggest.length) {
      const where = frames.get(biggest[0] as string)?.[0]?.func;
      return { labels: odd, why: `the other ${biggest.length} ranks wait in ${where}` };
    }
  }
  const first = finding.order[0];
  if (!first) return { labels: [], why: 'no rank was running' };
  const labels = finding.order.filter((o) => o.at - first.at < 1000).map((o) => o.label);
  return {
    labels,
    why: labels.length === finding.order.length ? 'every rank stopped at once' : 'stopped making progress first',
  };
}

/** `all_reduce (distributed_c10d.py:1536) < step (train.py:40)`: a rank's top frames on one line. */
export function describeFrames(frames: Frame[], n = 3): string {
  if (frames.length === 0) return '(no Python stack)';
  return frames
    .slice(0, n)
    .map((f) => `${f.func} (${f.file.split('/').pop()}:${f.line})`)
    .join(' < ');
}

/**
 * Checkpoint completeness and retention, as pure functions over what was seen in each saving rank's
 * checkpoint directory; every one is linear in the number of files (plus one sort per rank), so a
 * rank with thousands of checkpoints costs milliseconds, never seconds.
 *
 * Only files the run owns (see ownership.ts) are ever passed in. Each rank is judged against its own
 * history, never against other ranks (sharded checkpoints differ in size from rank to rank):
 *  - a file is stable when its size and mtime did not change over a settle period (or every writer
 *    has ended);
 *  - where the job writes completion markers (`<file>.done` beside a checkpoint), a stable file is
 *    complete exactly when its marker exists;
 *  - otherwise every stable file older than the rank's newest one is complete (the rank went on to
 *    save a later one), and the newest is complete unless it is smaller than every earlier save of
 *    that rank (a rank that died mid-save leaves a stable but short file).
 * A step is complete when every saving rank has a complete file for it.
 */
export const DEFAULT_PATTERN = '{prefix}-{epoch}_{step}.ckpt';
/** The completion marker a job may write beside a finished checkpoint. */
export const MARKER_SUFFIX = '.done';

export interface CkptName {
  epoch: number;
  step: number;
  prefix?: string;
  /** The rank the name carries, when the pattern has {rank}. */
  rank?: number;
}

/** One file as seen in a directory listing. */
export interface CkptFile {
  name: string;
  size: number;
  mtimeMs: number;
  /** When the transport reports it: tells a file replaced under the same name apart. */
  ino?: number;
}

/** A file after observation: its parsed name and whether its size has settled. */
export interface ObservedCkpt extends CkptFile, CkptName {
  stable: boolean;
  /** Its completion marker (`<name>.done`) is in the same listing. */
  marked: boolean;
  /** A verdict given earlier on this very file (same size and mtime), which stands. */
  verdict?: 'complete' | 'partial';
}

export function patternRegExp(pattern: string): RegExp {
  const parts = pattern.split(/(\{prefix\}|\{epoch\}|\{step\}|\{rank\})/);
  const body = parts
    .map((p) => {
      if (p === '{prefix}') return '(?<prefix>.+?)';
      if (p === '{epoch}') return '(?<epoch>\\d+)';
      if (p === '{step}') return '(?<step>\\d+)';
      if (p === '{rank}') return '(?<rank>\\d+)';
      return p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${body}$`);
}

export function patternHasRank(pattern: string): boolean {
  return pattern.includes('{rank}');
}

export function parseCkptName(name: string, pattern: string | RegExp = DEFAULT_PATTERN): CkptName | undefined {
  const m = (typeof pattern === 'string' ? patternRegExp(pattern) : pattern).exec(name);
  const g = m?.groups;
  if (!g) return undefined;
  const epoch = g.epoch !== undefined ? Number(g.epoch) : 0;
  const out: CkptName = { epoch, step: g.step !== undefined ? Number(g.step) : epoch };
  if (g.prefix !== undefined) out.prefix = g.prefix;
  if (g.rank !== undefined) out.rank = Number(g.rank);
  return out;
}

function order(a: CkptName, b: CkptName): number {
  return a.step - b.step || a.epoch - b.epoch;
}

/** The key of a step in the indexes below. */
export function stepKey(s: { epoch: number; step: number }): string {
  return `${s.step}:${s.epoch}`;
}

export interface ObserveOptions {
  pattern?: string;
  /** Keep only files whose {rank} is this rank (the pattern must have {rank}). */
  rank?: number;
  /** Every name in the current listing, when `current` is only a slice of it (markers are looked up here). */
  present?: ReadonlySet<string>;
}

/** The previous listing by name, for `observe`. */
export function byName(files: CkptFile[]): Map<string, CkptFile> {
  const m = new Map<string, CkptFile>();
  for (const f of files) m.set(f.name, f);
  return m;
}

/**
 * Marks files stable by comparing two listings taken at least the settle period apart: same size and
 * mtime in both means nobody is writing it any more. Files the pattern does not match are left out.
 * `current` may be a slice of the listing (pass the whole listing's names as `present`); the result
 * is in listing order: sort it with `byStep` once every slice is in.
 */
export function observeUnsorted(
  previous: CkptFile[] | Map<string, CkptFile>,
  current: CkptFile[],
  opts: ObserveOptions = {},
): ObservedCkpt[] {
  const re = patternRegExp(opts.pattern ?? DEFAULT_PATTERN);
  const before = previous instanceof Map ? previous : byName(previous);
  const present = opts.present ?? new Set(current.map((f) => f.name));
  const out: ObservedCkpt[] = [];
  for (const f of current) {
    const parsed = parseCkptName(f.name, re);
    if (!parsed) continue;
    if (opts.rank !== undefined && parsed.rank !== undefined && parsed.rank !== opts.rank) continue;
    const p = before.get(f.name);
    const o: ObservedCkpt = {
      name: f.name,
      size: f.size,
      mtimeMs: f.mtimeMs,
      epoch: parsed.epoch,
      step: parsed.step,
      stable: p !== undefined && p.size === f.size && p.mtimeMs === f.mtimeMs,
      marked: present.has(f.name + MARKER_SUFFIX),
    };
    if (f.ino !== undefined) o.ino = f.ino;
    if (parsed.prefix !== undefined) o.prefix = parsed.prefix;
    if (parsed.rank !== undefined) o.rank = parsed.rank;
    out.push(o);
  }
  return out;
}

/** Oldest step first. */
export function byStep(files: ObservedCkpt[]): ObservedCkpt[] {
  return files.sort(order);
}

export function observe(
  previous: CkptFile[] | Map<string, CkptFile>,
  current: CkptFile[],
  opts: ObserveOptions | string = {},
): ObservedCkpt[] {
  return byStep(observeUnsorted(previous, current, typeof opts === 'string' ? { pattern: opts } : opts));
}

/** One rank's complete files, oldest first, judged against that rank's own history only. */
export function completeFiles(files: ObservedCkpt[]): ObservedCkpt[] {
  const sorted = [...files].sort(order);
  if (sorted.some((f) => f.marked)) return sorted.filter((f) => f.verdict === 'complete' || (f.stable && f.marked));
  const out: ObservedCkpt[] = [];
  let smallestEarlier = Infinity;
  sorted.forEach((f, i) => {
    const newest = i === sorted.length - 1;
    if (
      f.verdict === 'complete' ||
      (f.verdict === undefined &&
        f.stable &&
        f.size > 0 &&
        (!newest || smallestEarlier === Infinity || f.size >= smallestEarlier))
    )
      out.push(f);
    if (f.stable && f.size > 0) smallestEarlier = Math.min(smallestEarlier, f.size);
  });
  return out;
}

export interface CompleteStep {
  epoch: number;
  step: number;
  /** The file of each saving rank for this step. */
  files: Record<string, string>;
}

/** Steps indexed by key as ranks' complete files are added, one rank at a time (linear overall). */
export class StepIndex {
  private readonly index = new Map<string, CompleteStep>();
  private readonly counts = new Map<string, number>();
  private ranks = 0;

  add(label: string, complete: ObservedCkpt[]): void {
    this.ranks++;
    for (const f of complete) {
      const key = stepKey(f);
      let entry = this.index.get(key);
      if (!entry) this.index.set(key, (entry = { epoch: f.epoch, step: f.step, files: {} }));
      if (entry.files[label] === undefined) this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
      entry.files[label] = f.name;
    }
  }

  /** Steps every added rank completed, oldest first. */
  complete(): CompleteStep[] {
    if (this.ranks === 0) return [];
    const out: CompleteStep[] = [];
    for (const [key, s] of this.index) if (this.counts.get(key) === this.ranks) out.push(s);
    return out.sort(order);
  }
}

/** Every step that all saving ranks completed, oldest first: one pass over every rank's files. */
export function completeSteps(byRank: Record<string, ObservedCkpt[]>, savingRanks: string[]): CompleteStep[] {
  const index = new StepIndex();
  for (const r of savingRanks) index.add(r, completeFiles(byRank[r] ?? []));
  return index.complete();
}

export function latestCompleteStep(
  byRank: Record<string, ObservedCkpt[]>,
  savingRanks: string[],
): CompleteStep | undefined {
  return completeSteps(byRank, savingRanks).at(-1);
}

/**
 * Which of one rank's files to delete to keep at most `keepMax` complete checkpoints. Never a file
 * still being written, never a partial one (it is evidence, and not counted), never the newest
 * complete one, and never a step that is the newest complete step of the whole run.
 */
export function filesToPrune(
  files: ObservedCkpt[],
  keepMax: number,
  protect: { epoch: number; step: number }[] = [],
): ObservedCkpt[] {
  return prunable(completeFiles(files), keepMax, protect);
}

/** `filesToPrune` for a rank's complete files (oldest first), as `completeFiles` gave them. */
export function prunable(
  complete: ObservedCkpt[],
  keepMax: number,
  protect: { epoch: number; step: number }[] = [],
): ObservedCkpt[] {
  const excess = complete.length - Math.max(1, keepMax);
  if (excess <= 0) return [];
  const guarded = new Set(protect.map(stepKey));
  return complete.slice(0, excess).filter((f) => !guarded.has(stepKey(f)));
}

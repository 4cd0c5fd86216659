/**
 * Checkpoint completeness and retention, as pure functions over what was seen in each saving rank's
 * checkpoint directory. A checkpoint file is complete only when
 *  - its size has stopped changing (seen with the same size and mtime over a settle period), and
 *  - it is not smaller than the rank's usual checkpoint size (a rank that died mid-save leaves a file
 *    whose size is stable but short: data-parallel checkpoints of one model all have the same size).
 * A step is complete when every saving rank has a complete file for it.
 */
export const DEFAULT_PATTERN = '{prefix}-{epoch}_{step}.ckpt';

export interface CkptName {
  epoch: number;
  step: number;
  prefix?: string;
}

/** One file as seen in a directory listing. */
export interface CkptFile {
  name: string;
  size: number;
  mtimeMs: number;
}

/** A file after observation: its parsed name and whether its size has settled. */
export interface ObservedCkpt extends CkptFile, CkptName {
  stable: boolean;
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

export function parseCkptName(name: string, pattern = DEFAULT_PATTERN): CkptName | undefined {
  const m = patternRegExp(pattern).exec(name);
  if (!m?.groups) return undefined;
  const epoch = m.groups.epoch !== undefined ? Number(m.groups.epoch) : 0;
  const step = m.groups.step !== undefined ? Number(m.groups.step) : epoch;
  return { epoch, step, ...(m.groups.prefix !== undefined ? { prefix: m.groups.prefix } : {}) };
}

function order(a: CkptName, b: CkptName): number {
  return a.step - b.step || a.epoch - b.epoch;
}

/**
 * Marks files stable by comparing two listings taken at least the settle period apart: same size and
 * mtime in both means nobody is writing it any more.
 */
export function observe(previous: CkptFile[], current: CkptFile[], pattern = DEFAULT_PATTERN): ObservedCkpt[] {
  const before = new Map(previous.map((f) => [f.name, f]));
  const out: ObservedCkpt[] = [];
  for (const f of current) {
    const parsed = parseCkptName(f.name, pattern);
    if (!parsed) continue;
    const p = before.get(f.name);
    out.push({ ...f, ...parsed, stable: p !== undefined && p.size === f.size && p.mtimeMs === f.mtimeMs });
  }
  return out.sort(order);
}

/** The usual size of one rank's checkpoints: the largest size seen at least twice, else the largest. */
function usualSize(files: ObservedCkpt[]): number {
  const counts = new Map<number, number>();
  for (const f of files) if (f.stable) counts.set(f.size, (counts.get(f.size) ?? 0) + 1);
  const repeated = [...counts].filter(([, n]) => n >= 2).map(([s]) => s);
  if (repeated.length > 0) return Math.max(...repeated);
  return Math.max(0, ...files.filter((f) => f.stable).map((f) => f.size));
}

export function completeFiles(files: ObservedCkpt[], peerSizes: number[] = []): ObservedCkpt[] {
  const reference = Math.max(usualSize(files), ...peerSizes, 0);
  return files.filter((f) => f.stable && f.size > 0 && f.size >= reference);
}

export interface CompleteStep {
  epoch: number;
  step: number;
  /** The file of each saving rank for this step. */
  files: Record<string, string>;
}

/** Every step that all saving ranks completed, oldest first. */
export function completeSteps(byRank: Record<string, ObservedCkpt[]>, savingRanks: string[]): CompleteStep[] {
  if (savingRanks.length === 0) return [];
  const peers = savingRanks.map((r) => usualSize(byRank[r] ?? []));
  const complete = savingRanks.map((r) => completeFiles(byRank[r] ?? [], peers));
  const first = complete[0] as ObservedCkpt[];
  const steps: CompleteStep[] = [];
  for (const candidate of first) {
    const files: Record<string, string> = {};
    let all = true;
    savingRanks.forEach((r, i) => {
      const f = (complete[i] as ObservedCkpt[]).find((x) => x.step === candidate.step && x.epoch === candidate.epoch);
      if (f) files[r] = f.name;
      else all = false;
    });
    if (all) steps.push({ epoch: candidate.epoch, step: candidate.step, files });
  }
  return steps;
}

export function latestCompleteStep(byRank: Record<string, ObservedCkpt[]>, savingRanks: string[]): CompleteStep | undefined {
  return completeSteps(byRank, savingRanks).at(-1);
}

/**
 * Which of one rank's files to delete to keep at most `keepMax` complete checkpoints. Never a file
 * still being written, never a partial one (it is evidence, and not counted), never the newest
 * complete one, and never a step that is the newest complete step of the whole run.
 */
export function filesToPrune(files: ObservedCkpt[], keepMax: number, protect: { epoch: number; step: number }[] = [], peerSizes: number[] = []): ObservedCkpt[] {
  if (keepMax < 1) keepMax = 1;
  const complete = completeFiles(files, peerSizes).sort(order);
  const excess = complete.length - keepMax;
  if (excess <= 0) return [];
  const isProtected = (f: ObservedCkpt) => protect.some((p) => p.step === f.step && p.epoch === f.epoch);
  return complete.slice(0, excess).filter((f) => !isProtected(f));
}

import { posix } from 'node:path';
import type { RankSpec } from '../plan/types.js';
import type { HostTransport } from '../transport/types.js';
import { appendIndex, fileLine, RankOwnership, type IndexLine } from './ownership.js';
import {
  byName,
  byStep,
  completeFiles,
  DEFAULT_PATTERN,
  prunable,
  MARKER_SUFFIX,
  observeUnsorted,
  patternHasRank,
  patternRegExp,
  StepIndex,
  type CkptFile,
  type CompleteStep,
  type ObservedCkpt,
} from './policy.js';

export type CheckpointEvent =
  | { kind: 'ckpt-saved'; label: string; host: string; file: string; epoch: number; step: number; size: number }
  | { kind: 'ckpt-pruned'; label: string; host: string; file: string; epoch: number; step: number }
  | { kind: 'ckpt-error'; label: string; host: string; message: string }
  | { kind: 'ckpt-foreign'; label: string; host: string; dir: string; files: number }
  | { kind: 'ckpt-shared-dir'; label: string; host: string; dir: string; ranks: string[] };

/** Where one saving rank writes its checkpoints, as the plan handed it to the rank. */
export interface SavingRank {
  label: string;
  /** Its global rank: what {rank} in checkpoint.pattern is matched against. */
  rank: number;
  host: string;
  dir: string;
}

/** The saving ranks of a plan: those told NPURUN_CKPT_SAVE=1, with NPURUN_CKPT_DIR resolved against their cwd. */
export function savingRanks(plan: {
  ranks: Pick<RankSpec, 'label' | 'rank' | 'host' | 'cwd' | 'env'>[];
}): SavingRank[] {
  return plan.ranks
    .filter((r) => r.env.NPURUN_CKPT_SAVE === '1' && r.env.NPURUN_CKPT_DIR)
    .map((r) => ({
      label: r.label,
      rank: r.rank,
      host: r.host,
      dir: posix.resolve(r.cwd, r.env.NPURUN_CKPT_DIR as string),
    }));
}

/**
 * The directories to watch. With {rank} in the pattern each rank's files are told apart by name,
 * even in one shared folder. Without it, ranks saving into one folder cannot be told apart: the
 * folder is watched once, for the first of them, and the others resume from its files.
 */
export function watchUnits(
  ranks: SavingRank[],
  pattern: string,
): { units: SavingRank[]; shared: Map<string, string[]> } {
  if (patternHasRank(pattern)) return { units: ranks, shared: new Map() };
  const byDir = new Map<string, SavingRank>();
  const shared = new Map<string, string[]>();
  const units: SavingRank[] = [];
  for (const r of ranks) {
    const key = `${r.host}\0${r.dir}`;
    const first = byDir.get(key);
    if (first) shared.set(first.label, [...(shared.get(first.label) ?? []), r.label]);
    else {
      byDir.set(key, r);
      units.push(r);
    }
  }
  return { units, shared };
}

export interface WatcherOptions {
  keepMax: number;
  pattern?: string;
  /** Time between two listings of every directory; also the settle time for "size stopped changing". */
  intervalMs?: number;
  /** Where the run's owned files are recorded (checkpoints.jsonl in the run folder). */
  indexFile?: string;
  /** At most this many removals per pass (the rest wait for the next pass). */
  maxRemovalsPerPass?: number;
  onEvent: (e: CheckpointEvent) => void;
}

/** Lets timers and I/O (heartbeats, rank output) run between two slices of bookkeeping. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Events announced, or files observed, between two yields. */
const EVENTS_PER_SLICE = 256;
const FILES_PER_SLICE = 500;

interface UnitState {
  unit: SavingRank;
  own: RankOwnership;
  previous: CkptFile[];
  /** The run's own checkpoints in the directory, oldest step first, and the complete ones among them. */
  observed: ObservedCkpt[];
  complete: ObservedCkpt[];
}

/**
 * Enforces retention while the run goes: lists every saving rank's checkpoint directory on its host
 * (SFTP for remote hosts), records each newly complete checkpoint of the run's own, and removes the
 * oldest complete ones beyond keep-max, never the newest step that every saving rank completed and
 * never a file the run did not write. Every pass is linear in the files listed and yields to the
 * event loop between directories, so supervision (heartbeats, output) never waits on it.
 */
export class CheckpointWatcher {
  private readonly states: UnitState[];
  private readonly shared: Map<string, string[]>;
  private readonly pattern: string;
  private readonly matches: RegExp;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> = Promise.resolve();
  private running = false;
  private pending: IndexLine[] = [];
  private steps: CompleteStep[] = [];

  constructor(
    ranks: SavingRank[],
    private readonly transports: Map<string, HostTransport>,
    private readonly opts: WatcherOptions,
  ) {
    this.pattern = opts.pattern ?? DEFAULT_PATTERN;
    this.matches = patternRegExp(this.pattern);
    const { units, shared } = watchUnits(ranks, this.pattern);
    this.shared = shared;
    this.states = units.map((unit) => ({ unit, own: new RankOwnership(), previous: [], observed: [], complete: [] }));
  }

  /** Takes the baseline of every directory (call before any rank starts), then watches every interval. */
  async start(): Promise<void> {
    if (this.states.length === 0) return;
    for (const [label, others] of this.shared) {
      const s = this.states.find((x) => x.unit.label === label) as UnitState;
      this.opts.onEvent({
        kind: 'ckpt-shared-dir',
        label,
        host: s.unit.host,
        dir: s.unit.dir,
        ranks: [label, ...others],
      });
    }
    await Promise.all(this.states.map((s) => this.list(s).then((listing) => listing && this.baseline(s, listing))));
    await this.flush();
    this.timer = setInterval(() => {
      if (this.running) return; // a slow pass is never queued behind another
      this.running = true;
      this.pass = this.tick().finally(() => {
        this.running = false;
      });
    }, this.opts.intervalMs ?? 2000);
    this.timer.unref();
  }

  /**
   * Stops watching after one last pass, so the final checkpoints are recorded. Every rank has ended by
   * then, so nothing is being written any more: one listing is final (a save cut short by a crash is
   * still told apart by its size or its missing marker). `endedBadly`: ranks that did not exit 0,
   * whose newest save may have been cut short (see `distrustFirstSave`).
   */
  async stop(endedBadly: string[] = []): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.pass;
    await this.tick(true, new Set(endedBadly));
  }

  /**
   * A restart on other hosts (a spare in a lost host's place, a smaller world): watch the new plan's
   * saving ranks. A rank saving into the same directory keeps its history, now listed through its new
   * host (storage every host sees); a new directory gets its baseline at the next pass; ranks that
   * no longer save stop counting towards "every saving rank completed".
   */
  follow(ranks: SavingRank[]): void {
    const { units, shared } = watchUnits(ranks, this.pattern);
    const before = new Map(this.states.map((s) => [s.unit.label, s]));
    const next = units.map((unit) => {
      const kept = before.get(unit.label);
      if (kept && kept.unit.dir === unit.dir) return Object.assign(kept, { unit });
      return { unit, own: new RankOwnership(), previous: [], observed: [], complete: [] };
    });
    this.states.splice(0, this.states.length, ...next);
    this.shared.clear();
    for (const [label, others] of shared) this.shared.set(label, others);
  }

  /** The newest step every saving rank completed, as of the last pass. */
  latest(): CompleteStep | undefined {
    return this.steps.at(-1);
  }

  private error(s: UnitState, err: unknown): void {
    this.opts.onEvent({
      kind: 'ckpt-error',
      label: s.unit.label,
      host: s.unit.host,
      message: err instanceof Error ? err.message : String(err),
    });
  }

  /** The checkpoints and markers in a unit's directory ([] when it does not exist yet), or undefined on error. */
  private async list(s: UnitState): Promise<CkptFile[] | undefined> {
    const t = this.transports.get(s.unit.host);
    if (!t) return undefined;
    try {
      const all = (await t.listDir(s.unit.dir)) ?? [];
      return all.filter(
        (f) =>
          this.matches.test(f.name) ||
          (f.name.endsWith(MARKER_SUFFIX) && this.matches.test(f.name.slice(0, -MARKER_SUFFIX.length))),
      );
    } catch (err) {
      this.error(s, err);
      return undefined;
    }
  }

  private baseline(s: UnitState, listing: CkptFile[]): void {
    const foreign = s.own.takeBaseline(listing);
    const { label, rank, host, dir } = s.unit;
    this.pending.push({ t: 'rank', label, rank, host, dir, foreign, at: new Date().toISOString() });
    if (foreign > 0) this.opts.onEvent({ kind: 'ckpt-foreign', label, host, dir, files: foreign });
  }

  private async flush(): Promise<void> {
    const lines = this.pending;
    this.pending = [];
    if (!this.opts.indexFile) return;
    try {
      await appendIndex(this.opts.indexFile, lines);
    } catch (err) {
      const s = this.states[0] as UnitState;
      this.error(
        s,
        new Error(
          `cannot record checkpoints in ${this.opts.indexFile}: ${err instanceof Error ? err.message : String(err)}`,
        ),
      );
    }
  }

  /**
   * One pass: list every directory, keep the run's own files, judge them, record, prune. Work is
   * done in slices of a few hundred files with the event loop let through between them.
   */
  async tick(writersGone = false, endedBadly: ReadonlySet<string> = new Set()): Promise<void> {
    const listings = await Promise.all(this.states.map((s) => this.list(s)));
    for (const [i, s] of this.states.entries()) {
      const now = listings[i];
      if (now && !s.own.hasBaseline) this.baseline(s, now);
      else if (now) await this.observeUnit(s, now, writersGone);
      await yieldToLoop();
    }
    if (endedBadly.size > 0) this.distrustFirstSave(endedBadly);
    const index = new StepIndex();
    for (const s of this.states) index.add(s.unit.label, s.complete);
    this.steps = index.complete();
    await this.record(writersGone);
    await this.prune();
    await this.flush();
  }

  /**
   * A rank that failed may have died in the middle of its very first save, which no earlier save of
   * its own can show short. Without a marker, that save counts only if another rank saved the same
   * step at exactly the same size (data-parallel replicas); otherwise it is partial.
   */
  private distrustFirstSave(endedBadly: ReadonlySet<string>): void {
    for (const s of this.states) {
      if (!endedBadly.has(s.unit.label)) continue;
      const settled = s.observed.filter((f) => f.stable && f.size > 0);
      const newest = s.complete.at(-1);
      if (!newest || newest.marked || settled.length !== 1 || settled[0] !== newest) continue;
      const twin = this.states.some(
        (o) =>
          o !== s &&
          o.complete.some((f) => f.step === newest.step && f.epoch === newest.epoch && f.size === newest.size),
      );
      if (twin) continue;
      newest.verdict = 'partial';
      s.complete = s.complete.slice(0, -1);
    }
  }

  private async observeUnit(s: UnitState, now: CkptFile[], writersGone: boolean): Promise<void> {
    const { mine, added } = s.own.claim(now);
    for (const f of added) this.pending.push(fileLine('owned', s.unit.label, f));
    const before = byName(writersGone ? mine : s.previous);
    const present = new Set(mine.map((f) => f.name));
    const rank = patternHasRank(this.pattern) ? s.unit.rank : undefined;
    const observed: ObservedCkpt[] = [];
    for (let at = 0; at < mine.length; at += FILES_PER_SLICE) {
      await yieldToLoop();
      const slice = observeUnsorted(before, mine.slice(at, at + FILES_PER_SLICE), {
        pattern: this.pattern,
        present,
        ...(rank !== undefined ? { rank } : {}),
      });
      for (const f of slice) {
        const verdict = s.own.verdictOf(f);
        if (verdict) f.verdict = verdict;
        observed.push(f);
      }
    }
    s.observed = byStep(observed);
    s.previous = mine;
    s.complete = completeFiles(s.observed);
  }

  /** Announces newly complete files (and, at the end, partial ones) and records their verdicts. */
  private async record(writersGone: boolean): Promise<void> {
    let sinceYield = 0;
    for (const s of this.states) {
      const names = new Set(s.complete.map((f) => f.name));
      for (const f of s.complete) {
        if (!s.own.judge(f, 'complete')) continue;
        this.pending.push(fileLine('complete', s.unit.label, f));
        this.opts.onEvent({
          kind: 'ckpt-saved',
          label: s.unit.label,
          host: s.unit.host,
          file: posix.join(s.unit.dir, f.name),
          epoch: f.epoch,
          step: f.step,
          size: f.size,
        });
        if (++sinceYield >= EVENTS_PER_SLICE) {
          sinceYield = 0;
          await yieldToLoop();
        }
      }
      if (writersGone) {
        for (const f of s.observed)
          if (!names.has(f.name) && s.own.judge(f, 'partial')) this.pending.push(fileLine('partial', s.unit.label, f));
      }
      await yieldToLoop();
    }
  }

  private async prune(): Promise<void> {
    const latest = this.latest();
    const protect = latest ? [latest] : [];
    let budget = this.opts.maxRemovalsPerPass ?? 200;
    for (const s of this.states) {
      const t = this.transports.get(s.unit.host);
      if (!t || budget <= 0) continue;
      const doomed = prunable(s.complete, this.opts.keepMax, protect).slice(0, budget);
      budget -= doomed.length;
      const gone = new Set<string>();
      for (const f of doomed) {
        const path = posix.join(s.unit.dir, f.name);
        try {
          await t.removeFile(path);
          if (f.marked) await t.removeFile(path + MARKER_SUFFIX);
          gone.add(f.name);
          s.own.forget(f.name);
          this.pending.push({ t: 'pruned', label: s.unit.label, name: f.name });
          this.opts.onEvent({
            kind: 'ckpt-pruned',
            label: s.unit.label,
            host: s.unit.host,
            file: path,
            epoch: f.epoch,
            step: f.step,
          });
        } catch (err) {
          this.error(s, err);
        }
      }
      if (gone.size > 0) {
        s.observed = s.observed.filter((x) => !gone.has(x.name));
        s.complete = s.complete.filter((x) => !gone.has(x.name));
      }
    }
  }
}

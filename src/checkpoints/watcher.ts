import { posix } from 'node:path';
import type { RankSpec, RunPlan } from '../plan/types.js';
import type { DirEntry, HostTransport } from '../transport/types.js';
import { DEFAULT_PATTERN, completeFiles, filesToPrune, latestCompleteStep, observe, type CompleteStep, type ObservedCkpt } from './policy.js';

export type CheckpointEvent =
  | { kind: 'ckpt-saved'; label: string; host: string; file: string; epoch: number; step: number; size: number }
  | { kind: 'ckpt-pruned'; label: string; host: string; file: string; epoch: number; step: number }
  | { kind: 'ckpt-error'; label: string; host: string; message: string };

/** Where one saving rank writes its checkpoints, as the plan handed it to the rank. */
export interface SavingRank {
  label: string;
  host: string;
  dir: string;
}

/** The saving ranks of a plan: those told NPURUN_CKPT_SAVE=1, with NPURUN_CKPT_DIR resolved against their cwd. */
export function savingRanks(plan: Pick<RunPlan, 'ranks'>): SavingRank[] {
  return plan.ranks
    .filter((r: RankSpec) => r.env.NPURUN_CKPT_SAVE === '1' && r.env.NPURUN_CKPT_DIR)
    .map((r) => ({ label: r.label, host: r.host, dir: posix.resolve(r.cwd, r.env.NPURUN_CKPT_DIR as string) }));
}

export interface WatcherOptions {
  keepMax: number;
  pattern?: string;
  /** Time between two listings of every directory; also the settle time for "size stopped changing". */
  intervalMs?: number;
  onEvent: (e: CheckpointEvent) => void;
}

/**
 * Enforces retention while the run goes: lists every saving rank's checkpoint directory on its host
 * (SFTP for remote hosts), records each newly complete checkpoint, and removes the oldest complete
 * ones beyond keep-max, never the newest step that every saving rank completed.
 */
export class CheckpointWatcher {
  private readonly previous = new Map<string, DirEntry[]>();
  private readonly observed = new Map<string, ObservedCkpt[]>();
  private readonly announced = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> = Promise.resolve();

  constructor(
    private readonly ranks: SavingRank[],
    private readonly transports: Map<string, HostTransport>,
    private readonly opts: WatcherOptions,
  ) {}

  start(): void {
    if (this.ranks.length === 0) return;
    this.timer = setInterval(() => {
      this.pass = this.pass.then(() => this.tick());
    }, this.opts.intervalMs ?? 2000);
    this.timer.unref();
  }

  /**
   * Stops watching after one last pass, so the final checkpoints are recorded. Every rank has ended by
   * then, so nothing is being written any more: one listing is final (a save cut short by a crash is
   * still told apart by its size).
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.pass;
    await this.tick(true);
  }

  latest(): CompleteStep | undefined {
    return latestCompleteStep(Object.fromEntries(this.observed), this.ranks.map((r) => r.label));
  }

  async tick(writersGone = false): Promise<void> {
    const pattern = this.opts.pattern ?? DEFAULT_PATTERN;
    await Promise.all(
      this.ranks.map(async (r) => {
        const t = this.transports.get(r.host);
        if (!t) return;
        try {
          const now = (await t.listDir(r.dir)) ?? [];
          const obs = observe(writersGone ? now : (this.previous.get(r.label) ?? []), now, pattern);
          this.previous.set(r.label, now);
          this.observed.set(r.label, obs);
        } catch (err) {
          this.opts.onEvent({ kind: 'ckpt-error', label: r.label, host: r.host, message: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    const latest = this.latest();
    const protect = latest ? [latest] : [];
    for (const r of this.ranks) {
      const obs = this.observed.get(r.label) ?? [];
      for (const f of completeFiles(obs)) {
        const key = `${r.label}/${f.name}/${f.size}`;
        if (!this.announced.has(key)) {
          this.announced.add(key);
          this.opts.onEvent({ kind: 'ckpt-saved', label: r.label, host: r.host, file: posix.join(r.dir, f.name), epoch: f.epoch, step: f.step, size: f.size });
        }
      }
      const t = this.transports.get(r.host);
      if (!t) continue;
      for (const f of filesToPrune(obs, this.opts.keepMax, protect)) {
        const path = posix.join(r.dir, f.name);
        try {
          await t.removeFile(path);
          this.opts.onEvent({ kind: 'ckpt-pruned', label: r.label, host: r.host, file: path, epoch: f.epoch, step: f.step });
          this.observed.set(r.label, (this.observed.get(r.label) ?? []).filter((x) => x.name !== f.name));
        } catch (err) {
          this.opts.onEvent({ kind: 'ckpt-error', label: r.label, host: r.host, message: err instanceof Error ? err.message : String(err) });
        }
      }
    }
  }
}

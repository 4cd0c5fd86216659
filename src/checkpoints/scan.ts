import { posix } from 'node:path';
import { inputError, NpurunError } from '../errors.js';
import type { HostSpec, RunPlan } from '../plan/types.js';
import type { RunInfo } from '../run-folder/record.js';
import type { HostTransport } from '../transport/types.js';
import { CKPT_INDEX_FILE, readIndex, sameFile, type RecordedRank } from './ownership.js';
import {
  completeFiles,
  completeSteps,
  DEFAULT_PATTERN,
  observe,
  patternHasRank,
  type CkptFile,
  type CompleteStep,
  type ObservedCkpt,
} from './policy.js';
import { savingRanks, watchUnits } from './watcher.js';
import { withFanout } from '../fanout.js';

export interface ScannedRank {
  label: string;
  host: string;
  dir: string;
  /** The run's own files still there, as they are now. */
  files: (ObservedCkpt & { complete: boolean })[];
  /** Files matching the pattern that this run did not write (left alone, never counted). */
  foreign: number;
  /** Files the run wrote that were replaced since (another run wrote the same name). */
  replaced: string[];
  error?: string;
}

export interface CheckpointScan {
  ranks: ScannedRank[];
  /** Ranks that saved into another rank's folder with no {rank} in the pattern: label -> that rank. */
  sharedWith: Record<string, string>;
  steps: CompleteStep[];
  latest?: CompleteStep;
}

/** How to reach a run's hosts: connections already open (launch's preflight), else open one. */
export interface HostAccess {
  transports?: Map<string, HostTransport>;
  connect: (host: HostSpec) => Promise<HostTransport>;
}

/**
 * Lists every saving rank's checkpoint directory twice, `settleMs` apart, so a file still being
 * written is seen as such, keeps only the files the run recorded as its own (checkpoints.jsonl) and
 * still as recorded, then works out which steps every saving rank completed.
 */
export async function scanCheckpoints(
  ranks: RecordedRank[],
  transports: Map<string, HostTransport>,
  opts: { pattern?: string; settleMs?: number } = {},
): Promise<CheckpointScan> {
  const pattern = opts.pattern ?? DEFAULT_PATTERN;
  const list = async (r: RecordedRank): Promise<CkptFile[] | Error> => {
    const t = transports.get(r.host);
    if (!t) return new Error(`host ${r.host} is not connected`);
    return t.listDir(r.dir).then(
      (x) => x ?? [],
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
  };
  const first = await Promise.all(ranks.map(list));
  await new Promise((resolve) => setTimeout(resolve, opts.settleMs ?? 1000));
  const second = await Promise.all(ranks.map(list));
  const out: ScannedRank[] = [];
  const byRank: Record<string, ObservedCkpt[]> = {};
  ranks.forEach((r, i) => {
    const a = first[i] as CkptFile[] | Error;
    const b = second[i] as CkptFile[] | Error;
    const entry: ScannedRank = { label: r.label, host: r.host, dir: r.dir, files: [], foreign: 0, replaced: [] };
    out.push(entry);
    byRank[r.label] = [];
    if (a instanceof Error || b instanceof Error) {
      entry.error = (a instanceof Error ? a : (b as Error)).message;
      return;
    }
    const own = (listing: CkptFile[]) =>
      listing.filter((f) => {
        const rec = r.files.get(f.name);
        if (!rec) return false;
        // A verdict was given on this very file; a file replaced since is another run's now.
        return rec.verdict === undefined || sameFile(rec, f);
      });
    const mine = own(b);
    const rank = patternHasRank(pattern) ? r.rank : undefined;
    const obs = observe(own(a), mine, { pattern, ...(rank !== undefined ? { rank } : {}) });
    for (const f of obs) {
      const verdict = r.files.get(f.name)?.verdict;
      if (verdict) f.verdict = verdict;
    }
    byRank[r.label] = obs;
    const mineNames = new Set(mine.map((f) => f.name));
    entry.replaced = b.filter((f) => r.files.has(f.name) && !mineNames.has(f.name)).map((f) => f.name);
    entry.foreign = observe(b, b, pattern).filter((f) => !mineNames.has(f.name)).length;
    const complete = new Set(completeFiles(obs).map((f) => f.name));
    entry.files = obs.map((f) => ({ ...f, complete: complete.has(f.name) }));
  });
  const steps = completeSteps(
    byRank,
    ranks.map((r) => r.label),
  );
  const latest = steps.at(-1);
  return { ranks: out, sharedWith: {}, steps, ...(latest ? { latest } : {}) };
}

/** The run's checkpoint pattern, as its ranks were told it. */
function patternOf(info: RunInfo): string {
  return info.record.ranks[0]?.env.NPURUN_CKPT_PATTERN ?? DEFAULT_PATTERN;
}

/** Hosts `scanRun` connects at once (`npurun ckpt` on a 512-host run connects them all). */
const SCAN_FANOUT = 64;

/**
 * Scans the checkpoints a finished (or running) run wrote, on its hosts. Uses `access.transports`
 * where a host is already connected; opens and closes the others.
 */
export async function scanRun(info: RunInfo, access: HostAccess): Promise<CheckpointScan> {
  const saving = savingRanks({
    ranks: info.record.ranks.map((r) => ({ label: r.label, rank: r.rank, host: r.host, cwd: r.cwd, env: r.env })),
  });
  if (saving.length === 0)
    throw new NpurunError(
      'input',
      `run ${info.runId} has no checkpoint policy (no rank was told to save: set checkpoint: in the job file)`,
    );
  const index = readIndex(info.dir);
  if (!index) {
    throw new NpurunError(
      'input',
      `run ${info.runId} has no ${CKPT_INDEX_FILE} in ${info.dir}: it was recorded by an older npurun, so which checkpoint files are its own is unknown; none is offered`,
    );
  }
  const pattern = patternOf(info);
  const { units, shared } = watchUnits(saving, pattern);
  const recorded = units.map((u) => index.get(u.label) ?? { ...u, foreign: 0, files: new Map() });
  const open = new Map<string, HostTransport>();
  const transports = new Map(access.transports ?? []);
  const missing = [...new Set(recorded.map((r) => r.host))]
    .filter((name) => !transports.has(name))
    .map((name) => {
      const host = info.hosts.find((h) => h.name === name);
      if (!host) throw new NpurunError('input', `run ${info.runId}: host ${name} is not in its recorded inventory`);
      return host;
    });
  try {
    // The hosts not connected yet, SCAN_FANOUT at a time; every one is tried, the first failure thrown.
    let failure: Error | undefined;
    await withFanout(missing, SCAN_FANOUT, async (host) => {
      try {
        const t = await access.connect(host);
        open.set(host.name, t);
        transports.set(host.name, t);
      } catch (err) {
        failure ??= err instanceof Error ? err : new Error(String(err));
      }
    });
    if (failure !== undefined) throw failure;
    const scan = await scanCheckpoints(recorded, transports, { pattern });
    for (const [first, others] of shared) for (const o of others) scan.sharedWith[o] = first;
    return scan;
  } finally {
    await Promise.all([...open.values()].map((t) => t.close()));
  }
}

/** How a resumed run's ranks map onto the checkpoints of a run with another world (job file `resume_map`). */
export type ResumeMap = 'error' | 'rank0' | 'same-rank';

/** What `launch --resume` hands the planner, plus what it needs to check the new world against. */
export interface ResumeSource {
  byLabel: Record<string, string>;
  /** For ranks without a file of their own: the first saving rank's (master-only saving). */
  fallback: string;
  epoch: number;
  step: number;
  runId: string;
  map: ResumeMap;
  /** The earlier run's rank labels (role "rank") and those that saved a file of their own. */
  oldRanks: string[];
  savers: string[];
}

/** The checkpoint each rank of a new run resumes from: its own file, else the first saving rank's. */
export function resumePaths(
  scan: CheckpointScan,
  step: CompleteStep,
): { byLabel: Record<string, string>; fallback: string } {
  const byLabel: Record<string, string> = {};
  for (const r of scan.ranks) {
    const name = step.files[r.label];
    if (name) byLabel[r.label] = posix.join(r.dir, name);
  }
  for (const [label, first] of Object.entries(scan.sharedWith))
    if (byLabel[first]) byLabel[label] = byLabel[first] as string;
  const fallback = Object.values(byLabel)[0] as string;
  return { byLabel, fallback };
}

/** Finds the newest step every saving rank of `runId` completed and the file each new rank starts from. */
export async function resumeFrom(info: RunInfo, access: HostAccess, map: ResumeMap = 'error'): Promise<ResumeSource> {
  const scan = await scanRun(info, access);
  if (!scan.latest)
    throw inputError(
      '--resume',
      `run ${info.runId} has no checkpoint step that every saving rank completed (see \`npurun ckpt list ${info.runId}\`)`,
    );
  const paths = resumePaths(scan, scan.latest);
  return {
    ...(map === 'rank0' ? { byLabel: {}, fallback: paths.fallback } : paths),
    epoch: scan.latest.epoch,
    step: scan.latest.step,
    runId: info.runId,
    map,
    oldRanks: info.record.ranks.filter((r) => r.role === 'rank').map((r) => r.label),
    savers: Object.keys(paths.byLabel),
  };
}

/**
 * Refuses a resume into a different world that would silently hand ranks another rank's file: with
 * per-rank checkpoints (more than one saving rank), the new ranks must be the old ones unless the
 * job file says `resume_map: rank0` (every rank loads rank 0's file) or `same-rank` (each rank its
 * own rank's file; a rank without one is refused).
 */
export function checkResumeWorld(plan: Pick<RunPlan, 'ranks'>, source: ResumeSource): void {
  if (source.map === 'rank0' || source.savers.length <= 1) return;
  const now = plan.ranks.filter((r) => r.role === 'rank').map((r) => r.label);
  if (source.map === 'same-rank') {
    const without = now.filter((l) => source.byLabel[l] === undefined);
    if (without.length > 0) {
      throw inputError(
        'resume_map',
        `same-rank: ranks ${without.join(', ')} have no checkpoint of their own in run ${source.runId} (it saved for ranks ${source.savers.join(', ')}); expected rank0, or a world of at most those ranks`,
      );
    }
    return;
  }
  const old = new Set(source.oldRanks);
  if (now.length !== old.size || now.some((l) => !old.has(l))) {
    throw inputError(
      '--resume',
      `run ${source.runId} saved a checkpoint per rank with ${old.size} ranks; this launch has ${now.length}: ranks would load other ranks' files. ` +
        'Set resume_map in the job file: "rank0" (every rank loads rank 0\'s file: data-parallel replicas) or "same-rank" (each rank its own rank\'s file)',
    );
  }
}

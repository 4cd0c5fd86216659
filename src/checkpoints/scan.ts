import { posix } from 'node:path';
import type { HostTransport } from '../transport/types.js';
import { completeFiles, completeSteps, DEFAULT_PATTERN, observe, type CompleteStep, type ObservedCkpt } from './policy.js';
import type { SavingRank } from './watcher.js';

export interface CheckpointScan {
  ranks: { label: string; host: string; dir: string; files: (ObservedCkpt & { complete: boolean })[]; error?: string }[];
  steps: CompleteStep[];
  latest?: CompleteStep;
}

/**
 * Lists every saving rank's checkpoint directory twice, `settleMs` apart, so a file still being written
 * is seen as such, then works out which steps every saving rank completed.
 */
export async function scanCheckpoints(ranks: SavingRank[], transports: Map<string, HostTransport>, opts: { pattern?: string; settleMs?: number } = {}): Promise<CheckpointScan> {
  const pattern = opts.pattern ?? DEFAULT_PATTERN;
  const list = (r: SavingRank) => {
    const t = transports.get(r.host);
    return t ? t.listDir(r.dir).then((x) => x ?? []) : Promise.reject(new Error(`host ${r.host} is not connected`));
  };
  const first = await Promise.all(ranks.map((r) => list(r).catch((e: unknown) => e as Error)));
  await new Promise((resolve) => setTimeout(resolve, opts.settleMs ?? 1000));
  const second = await Promise.all(ranks.map((r) => list(r).catch((e: unknown) => e as Error)));
  const byRank: Record<string, ObservedCkpt[]> = {};
  const out: CheckpointScan['ranks'] = [];
  ranks.forEach((r, i) => {
    const a = first[i];
    const b = second[i];
    if (a instanceof Error || b instanceof Error || a === undefined || b === undefined) {
      const err = a instanceof Error ? a : b instanceof Error ? b : new Error('no listing');
      out.push({ label: r.label, host: r.host, dir: r.dir, files: [], error: err.message });
      byRank[r.label] = [];
      return;
    }
    const obs = observe(a, b, pattern);
    byRank[r.label] = obs;
    out.push({ label: r.label, host: r.host, dir: r.dir, files: [] });
  });
  const peers = ranks.map((r) => completeFiles(byRank[r.label] ?? []).reduce((m, f) => Math.max(m, f.size), 0));
  for (const entry of out) {
    const obs = byRank[entry.label] ?? [];
    const complete = new Set(completeFiles(obs, peers).map((f) => f.name));
    entry.files = obs.map((f) => ({ ...f, complete: complete.has(f.name) }));
  }
  const steps = completeSteps(byRank, ranks.map((r) => r.label));
  const latest = steps.at(-1);
  return { ranks: out, steps, ...(latest ? { latest } : {}) };
}

/** The checkpoint each rank of a new run resumes from: its own file, else the first saving rank's (master-only saving). */
export function resumePaths(scan: CheckpointScan, step: CompleteStep): { byLabel: Record<string, string>; fallback: string } {
  const byLabel: Record<string, string> = {};
  for (const r of scan.ranks) {
    const name = step.files[r.label];
    if (name) byLabel[r.label] = posix.join(r.dir, name);
  }
  const fallback = Object.values(byLabel)[0] as string;
  return { byLabel, fallback };
}

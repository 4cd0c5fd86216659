import type { RankMetrics, Reduce } from './metrics.js';

/** The run's numbers, reduced across ranks and cross-checked. */
export interface RunSummary {
  ranks: RankMetrics[];
  training?: { lastEpoch: number; lastIter: number; totalFps?: number; meanLoss: number };
  /** Sums of the per-rank eval counts ("before results=[[top1], [top5], [tot]]"). */
  eval?: { top1Correct: number; top5Correct: number; total: number; top1Accuracy: number; top5Accuracy: number; ranks: number };
  /** The in-script allreduce results, when every reporting rank agrees. */
  allreduce?: { top1?: { correct: number; total: number }; top5?: { correct: number; total: number } };
  throughput?: { totalImgsPerSec: number; ranks: number };
  metrics: Record<string, { reduce: Reduce; value: number; ranks: number }>;
  /** Empty when every cross-check passed. */
  problems: string[];
}

function reduceValues(values: number[], how: Reduce): number {
  switch (how) {
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'mean':
      return values.reduce((a, b) => a + b, 0) / values.length;
    case 'min':
      return Math.min(...values);
    case 'max':
      return Math.max(...values);
    case 'last':
      return values[values.length - 1] as number;
  }
}

function pct(correct: number, total: number): number {
  return total === 0 ? 0 : (100 * correct) / total;
}

function checkAllreduce(ranks: RankMetrics[], metric: 'top1' | 'top5', evalSum: { correct: number; total: number } | undefined, problems: string[]) {
  const reporting = ranks.filter((r) => r.allreduce[metric]);
  if (reporting.length === 0) return undefined;
  const first = reporting[0] as RankMetrics;
  const ref = first.allreduce[metric] as { correct: number; total: number };
  for (const r of reporting) {
    const v = r.allreduce[metric] as { correct: number; total: number };
    if (v.correct !== ref.correct || v.total !== ref.total) {
      problems.push(
        `ranks disagree on the allreduce result: rank ${first.label} has ${metric}_correct=${ref.correct}, tot=${ref.total}; rank ${r.label} has ${metric}_correct=${v.correct}, tot=${v.total}`,
      );
    }
  }
  if (reporting.length < ranks.length) {
    const missing = ranks.filter((r) => !r.allreduce[metric]).map((r) => r.label);
    problems.push(`ranks ${missing.join(', ')} printed no "after allreduce" ${metric} line`);
  }
  if (evalSum && (evalSum.correct !== ref.correct || evalSum.total !== ref.total)) {
    problems.push(
      `allreduce ${metric} (correct=${ref.correct}, tot=${ref.total}) differs from the sum of per-rank counts (correct=${evalSum.correct}, tot=${evalSum.total}): a padded sampler counting repeated samples, or a wrong reduction`,
    );
  }
  return { correct: ref.correct, total: ref.total };
}

export function summarize(ranks: RankMetrics[]): RunSummary {
  const problems: string[] = [];
  const summary: RunSummary = { ranks, metrics: {}, problems };

  const trained = ranks.filter((r) => r.lastTrain);
  if (trained.length > 0) {
    const last = trained.map((r) => r.lastTrain as NonNullable<RankMetrics['lastTrain']>);
    const fps = last.filter((t) => t.fps !== undefined).map((t) => t.fps as number);
    summary.training = {
      lastEpoch: Math.max(...last.map((t) => t.epoch)),
      lastIter: Math.max(...last.map((t) => t.iter)),
      meanLoss: reduceValues(last.map((t) => t.loss), 'mean'),
      ...(fps.length > 0 ? { totalFps: reduceValues(fps, 'sum') } : {}),
    };
  }

  const counted = ranks.filter((r) => r.evalCounts);
  let sums: { top1: number; top5: number; total: number } | undefined;
  if (counted.length > 0) {
    sums = counted.reduce(
      (s, r) => {
        const c = r.evalCounts as NonNullable<RankMetrics['evalCounts']>;
        return { top1: s.top1 + c.top1, top5: s.top5 + c.top5, total: s.total + c.total };
      },
      { top1: 0, top5: 0, total: 0 },
    );
    summary.eval = {
      top1Correct: sums.top1,
      top5Correct: sums.top5,
      total: sums.total,
      top1Accuracy: pct(sums.top1, sums.total),
      top5Accuracy: pct(sums.top5, sums.total),
      ranks: counted.length,
    };
    if (counted.length < ranks.length) {
      problems.push(`ranks ${ranks.filter((r) => !r.evalCounts).map((r) => r.label).join(', ')} printed no per-rank eval counts: the totals cover ${counted.length} of ${ranks.length} ranks`);
    }
  }
  // The allreduce results are checked against the sums only when every rank gave its counts.
  const complete = counted.length === ranks.length ? sums : undefined;
  const top1 = checkAllreduce(ranks, 'top1', complete && { correct: complete.top1, total: complete.total }, problems);
  const top5 = checkAllreduce(ranks, 'top5', complete && { correct: complete.top5, total: complete.total }, problems);
  if (top1 || top5) summary.allreduce = { ...(top1 ? { top1 } : {}), ...(top5 ? { top5 } : {}) };

  const perf = ranks.filter((r) => r.imgsPerSec !== undefined);
  if (perf.length > 0) summary.throughput = { totalImgsPerSec: reduceValues(perf.map((r) => r.imgsPerSec as number), 'sum'), ranks: perf.length };

  const names = new Set(ranks.flatMap((r) => Object.keys(r.metrics)));
  for (const name of [...names].sort()) {
    const entries = ranks.flatMap((r) => (r.metrics[name] ? [r.metrics[name]] : []));
    const how = (entries[0] as { reduce: Reduce }).reduce;
    if (entries.some((e) => e.reduce !== how)) problems.push(`metric ${name} is reduced with different operations on different ranks`);
    summary.metrics[name] = { reduce: how, value: reduceValues(entries.map((e) => e.value), how), ranks: entries.length };
  }
  return summary;
}

function fmt(n: number | undefined, digits = 2): string {
  if (n === undefined) return '-';
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

function table(rows: string[][]): string[] {
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd());
}

/** The summary as people read it: a per-rank table, then the reduced totals and any problem. */
export function renderSummary(s: RunSummary): string {
  const out: string[] = [];
  const hasEval = s.ranks.some((r) => r.evalCounts);
  const header = ['rank', 'epoch', 'iter', 'loss', 'fps'];
  if (hasEval) header.push('top1', 'top5', 'tot');
  const rows = [header];
  for (const r of s.ranks) {
    const row = [r.label, fmt(r.lastTrain?.epoch), fmt(r.lastTrain?.iter), fmt(r.lastTrain?.loss, 4), fmt(r.lastTrain?.fps)];
    if (hasEval) row.push(fmt(r.evalCounts?.top1), fmt(r.evalCounts?.top5), fmt(r.evalCounts?.total));
    rows.push(row);
  }
  if (s.ranks.some((r) => r.lastTrain || r.evalCounts)) out.push(...table(rows));
  if (s.training) {
    out.push(`training: epoch ${s.training.lastEpoch}, iter ${s.training.lastIter}, mean last loss ${s.training.meanLoss.toFixed(4)}${s.training.totalFps !== undefined ? `, total ${s.training.totalFps.toFixed(2)} imgs/sec` : ''}`);
  }
  if (s.eval) {
    out.push(`eval (sum over ${s.eval.ranks} ranks): top1 ${s.eval.top1Correct}/${s.eval.total} = ${s.eval.top1Accuracy.toFixed(2)}%, top5 ${s.eval.top5Correct}/${s.eval.total} = ${s.eval.top5Accuracy.toFixed(2)}%`);
  }
  if (s.allreduce) {
    const parts = (['top1', 'top5'] as const).flatMap((k) => (s.allreduce?.[k] ? [`${k}_correct=${s.allreduce[k].correct} tot=${s.allreduce[k].total}`] : []));
    out.push(`allreduce (in-script): ${parts.join(', ')}${s.problems.length === 0 ? ' — agrees on every rank and with the per-rank sums' : ''}`);
  }
  if (s.throughput) out.push(`inference: ${s.throughput.totalImgsPerSec.toFixed(2)} img/sec over ${s.throughput.ranks} ranks`);
  for (const [name, m] of Object.entries(s.metrics)) out.push(`${name} (${m.reduce} over ${m.ranks} ranks): ${fmt(m.value, 4)}`);
  for (const p of s.problems) out.push(`MISMATCH: ${p}`);
  return out.join('\n');
}

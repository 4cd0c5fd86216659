import type { RankMetrics, Reduce } from './metrics.js';

/** The run's numbers, reduced across ranks and cross-checked. */
export interface RunSummary {
  ranks: RankMetrics[];
  training?: { lastEpoch: number; lastIter: number; totalFps?: number; meanLoss: number };
  /** Sums of the per-rank eval counts ("before results=[[top1], [top5], [tot]]"). */
  eval?: {
    top1Correct: number;
    top5Correct: number;
    total: number;
    top1Accuracy: number;
    top5Accuracy: number;
    ranks: number;
  };
  /** The in-script allreduce results, when every reporting rank agrees. */
  allreduce?: { top1?: { correct: number; total: number }; top5?: { correct: number; total: number } };
  throughput?: { totalImgsPerSec: number; ranks: number };
  metrics: Record<string, { reduce: Reduce; value: number; ranks: number }>;
  /** Samples in the eval set (job file eval.dataset_size, or a dataset_size metric line). */
  datasetSize?: number;
  /** What is wrong: NaN/inf, ranks that disagree, a wrong reduction, padding. Exit 1 when any. */
  problems: string[];
  /** What could not be checked, or was checked on fewer ranks (e.g. a rank-0-only print). */
  notes: string[];
  /** Lines that could not be used, each naming its rank and line; sums that overflow. */
  warnings: string[];
}

export interface SummarizeOptions {
  /** Samples in the eval set, from the job file (eval.dataset_size). */
  datasetSize?: number;
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
  }
}

function pct(correct: number, total: number): number {
  return total === 0 ? 0 : (100 * correct) / total;
}

function list(labels: string[]): string {
  return `${labels.length === 1 ? 'rank' : 'ranks'} ${labels.join(', ')}`;
}

type Counts = { correct: number; total: number };

/**
 * The allreduce lines: values that disagree between ranks are a problem; ranks that printed none (a
 * rank-0-only print) a note. Checked against the per-rank sums when every rank gave its counts.
 */
function checkAllreduce(
  ranks: RankMetrics[],
  metric: 'top1' | 'top5',
  evalSum: Counts | undefined,
  out: RunSummary,
): Counts | undefined {
  const reporting = ranks.filter((r) => r.allreduce[metric]);
  if (reporting.length === 0) return undefined;
  const first = reporting[0] as RankMetrics;
  const ref = first.allreduce[metric] as Counts;
  for (const r of reporting) {
    const v = r.allreduce[metric] as Counts;
    if (v.correct !== ref.correct || v.total !== ref.total) {
      out.problems.push(
        `ranks disagree on the allreduce result: rank ${first.label} has ${metric}_correct=${ref.correct}, tot=${ref.total}; rank ${r.label} has ${metric}_correct=${v.correct}, tot=${v.total}`,
      );
    }
  }
  if (reporting.length < ranks.length) {
    out.notes.push(
      `only ${list(reporting.map((r) => r.label))} printed the "after allreduce" ${metric} line (a print on some ranks only): checked as printed there`,
    );
  }
  if (evalSum && (evalSum.correct !== ref.correct || evalSum.total !== ref.total)) {
    out.problems.push(
      `allreduce ${metric} (correct=${ref.correct}, tot=${ref.total}) differs from the sum of per-rank counts (correct=${evalSum.correct}, tot=${evalSum.total}): the in-script reduction is wrong (a rank counted twice or missing)`,
    );
  }
  return { correct: ref.correct, total: ref.total };
}

/** The eval total against the dataset size: above it, a padded sampler counted repeated samples. */
function checkPadding(total: number | undefined, size: number | undefined, out: RunSummary): void {
  if (total === undefined) return;
  if (size === undefined) {
    out.notes.push(
      'padding cannot be checked: no dataset size (set eval.dataset_size in the job file, or print {"npurun":"metric","name":"dataset_size",...})',
    );
  } else if (total > size) {
    out.problems.push(
      `tot=${total} is ${total - size} above the dataset size ${size}: a padded sampler evaluated ${total - size} samples twice, so the accuracy is off`,
    );
  } else if (total < size) {
    out.notes.push(
      `tot=${total} is ${size - total} below the dataset size ${size}: ${size - total} samples were not evaluated (drop_last?)`,
    );
  }
}

function describe(v: number): string {
  return Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
}

export function summarize(ranks: RankMetrics[], opts: SummarizeOptions = {}): RunSummary {
  const summary: RunSummary = { ranks, metrics: {}, problems: [], notes: [], warnings: [] };
  const { problems, notes, warnings } = summary;

  for (const r of ranks) {
    if (r.nonFinite)
      problems.push(
        `rank ${r.label}: ${r.nonFinite.what} is ${describe(r.nonFinite.value)} (line ${r.nonFinite.line}): the run diverged`,
      );
    warnings.push(...r.warnings);
  }

  const trained = ranks.filter((r) => r.lastTrain);
  if (trained.length > 0) {
    const last = trained.map((r) => r.lastTrain as NonNullable<RankMetrics['lastTrain']>);
    const fps = last.filter((t) => t.fps !== undefined).map((t) => t.fps as number);
    summary.training = {
      lastEpoch: Math.max(...last.map((t) => t.epoch)),
      lastIter: Math.max(...last.map((t) => t.iter)),
      meanLoss: reduceValues(
        last.map((t) => t.loss),
        'mean',
      ),
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
      notes.push(
        `${list(ranks.filter((r) => !r.evalCounts).map((r) => r.label))} printed no per-rank eval counts: the totals cover ${counted.length} of ${ranks.length} ranks`,
      );
    }
  }
  // The allreduce results are checked against the sums only when every rank gave its counts.
  const complete = counted.length === ranks.length ? sums : undefined;
  const top1 = checkAllreduce(ranks, 'top1', complete && { correct: complete.top1, total: complete.total }, summary);
  const top5 = checkAllreduce(ranks, 'top5', complete && { correct: complete.top5, total: complete.total }, summary);
  if (top1 || top5) summary.allreduce = { ...(top1 ? { top1 } : {}), ...(top5 ? { top5 } : {}) };

  const perf = ranks.filter((r) => r.imgsPerSec !== undefined);
  if (perf.length > 0)
    summary.throughput = {
      totalImgsPerSec: reduceValues(
        perf.map((r) => r.imgsPerSec as number),
        'sum',
      ),
      ranks: perf.length,
    };

  const names = new Set(ranks.flatMap((r) => Object.keys(r.metrics)));
  for (const name of [...names].sort()) {
    const entries = ranks.flatMap((r) => (r.metrics[name] ? [{ label: r.label, ...r.metrics[name] }] : []));
    const how = (entries[0] as { reduce: Reduce }).reduce;
    if (entries.some((e) => e.reduce !== how))
      problems.push(`metric ${name} is reduced with different operations on different ranks`);
    const value = reduceValues(
      entries.map((e) => e.value),
      how,
    );
    summary.metrics[name] = { reduce: how, value, ranks: entries.length };
    const from = entries.map((e) => `rank ${e.label} line ${e.line}`).join(', ');
    if (!Number.isFinite(value) && entries.every((e) => Number.isFinite(e.value)))
      warnings.push(`metric ${name}: the ${how} over ${entries.length} ranks overflows a double (${from})`);
    else if (
      how === 'sum' &&
      Number.isFinite(value) &&
      Math.abs(value) > Number.MAX_SAFE_INTEGER &&
      entries.every((e) => Number.isInteger(e.value))
    ) {
      warnings.push(`metric ${name}: the sum ${value} is beyond 2^53, so it is not exact (${from})`);
    }
  }

  const sizeMetric = ranks.flatMap((r) => (r.metrics.dataset_size ? [r.metrics.dataset_size.value] : []));
  const datasetSize = opts.datasetSize ?? (sizeMetric.length > 0 ? Math.max(...sizeMetric) : undefined);
  if (datasetSize !== undefined) summary.datasetSize = datasetSize;
  checkPadding(top1?.total ?? top5?.total ?? sums?.total, datasetSize, summary);
  return summary;
}

function fmt(n: number | undefined, digits = 2): string {
  if (n === undefined) return '-';
  if (!Number.isFinite(n)) return describe(n);
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

function table(rows: string[][]): string[] {
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd(),
  );
}

/** The summary as people read it: a per-rank table, then the reduced totals and any problem. */
export function renderSummary(s: RunSummary): string {
  const out: string[] = [];
  const hasEval = s.ranks.some((r) => r.evalCounts);
  const flagged = s.ranks.some((r) => r.nonFinite);
  const header = ['rank', 'epoch', 'iter', 'loss', 'fps'];
  if (hasEval) header.push('top1', 'top5', 'tot');
  if (flagged) header.push('flag');
  const rows = [header];
  for (const r of s.ranks) {
    const row = [
      r.label,
      fmt(r.lastTrain?.epoch),
      fmt(r.lastTrain?.iter),
      fmt(r.lastTrain?.loss, 4),
      fmt(r.lastTrain?.fps),
    ];
    if (hasEval) row.push(fmt(r.evalCounts?.top1), fmt(r.evalCounts?.top5), fmt(r.evalCounts?.total));
    if (flagged) row.push(r.nonFinite ? `DIVERGED: ${describe(r.nonFinite.value)} at line ${r.nonFinite.line}` : '');
    rows.push(row);
  }
  if (s.ranks.some((r) => r.lastTrain || r.evalCounts)) out.push(...table(rows));
  if (s.training) {
    out.push(
      `training: epoch ${s.training.lastEpoch}, iter ${s.training.lastIter}, mean last loss ${fmt(s.training.meanLoss, 4)}${s.training.totalFps !== undefined ? `, total ${fmt(s.training.totalFps)} imgs/sec` : ''}`,
    );
  }
  if (s.eval) {
    out.push(
      `eval (sum over ${s.eval.ranks} ranks): top1 ${s.eval.top1Correct}/${s.eval.total} = ${s.eval.top1Accuracy.toFixed(2)}%, top5 ${s.eval.top5Correct}/${s.eval.total} = ${s.eval.top5Accuracy.toFixed(2)}%`,
    );
  }
  if (s.allreduce) {
    const parts = (['top1', 'top5'] as const).flatMap((k) =>
      s.allreduce?.[k] ? [`${k}_correct=${s.allreduce[k].correct} tot=${s.allreduce[k].total}`] : [],
    );
    const everyRank = s.ranks.every((r) => r.allreduce.top1 || r.allreduce.top5) && s.eval?.ranks === s.ranks.length;
    const verdict = everyRank
      ? ' — agrees on every rank and with the per-rank sums'
      : ' — agrees on every rank that printed it';
    out.push(`allreduce (in-script): ${parts.join(', ')}${s.problems.length === 0 ? verdict : ''}`);
  }
  if (s.datasetSize !== undefined) out.push(`dataset size: ${s.datasetSize}`);
  if (s.throughput)
    out.push(`inference: ${fmt(s.throughput.totalImgsPerSec)} img/sec over ${s.throughput.ranks} ranks`);
  for (const [name, m] of Object.entries(s.metrics))
    out.push(`${name} (${m.reduce} over ${m.ranks} ranks): ${fmt(m.value, 4)}`);
  for (const w of s.warnings) out.push(`warning: ${w}`);
  for (const n of s.notes) out.push(`note: ${n}`);
  for (const p of s.problems) out.push(`PROBLEM: ${p}`);
  return out.join('\n');
}

import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseMergedLine } from '../run-folder/log-format.js';
import { MERGED_LOG_FILE, writeFileAtomic } from '../run-folder/record.js';
import { emptyRankMetrics, foldMetric, readMetricLine, type RankMetrics } from './metrics.js';
import { summarize, type RunSummary } from './summary.js';

export const SUMMARY_FILE = 'summary.json';

/**
 * Reads a run's merged log once and reduces what every rank reported (ranks in rank order). Line
 * numbers in warnings are the line's number in the rank's own log (logs/rank-<label>.log).
 */
export async function summarizeRunFolder(
  runDir: string,
  record: { ranks: { label: string; role: string }[]; job?: { evalDatasetSize?: number } },
): Promise<RunSummary> {
  const lineNo = new Map<string, number>();
  const byLabel = new Map<string, RankMetrics>();
  const workers = record.ranks.filter((r) => r.role !== 'scheduler');
  for (const r of workers) byLabel.set(r.label, emptyRankMetrics(r.label));
  const file = join(runDir, MERGED_LOG_FILE);
  if (existsSync(file)) {
    const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    for await (const text of lines) {
      const merged = parseMergedLine(text);
      if (!merged) continue;
      const acc = byLabel.get(merged.label);
      if (!acc) continue;
      const n = (lineNo.get(merged.label) ?? 0) + 1;
      lineNo.set(merged.label, n);
      const ev = readMetricLine(merged.line);
      if (ev) foldMetric(acc, ev, n);
    }
  }
  const datasetSize = record.job?.evalDatasetSize;
  return summarize([...byLabel.values()], datasetSize !== undefined ? { datasetSize } : {});
}

/** JSON has no NaN or infinities: they are written as the strings "NaN", "Infinity", "-Infinity". */
export function summaryJson(summary: RunSummary): string {
  return (
    JSON.stringify(
      summary,
      (_key, v: unknown) =>
        typeof v === 'number' && !Number.isFinite(v) ? (Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity') : v,
      2,
    ) + '\n'
  );
}

export function writeSummary(runDir: string, summary: RunSummary): void {
  writeFileAtomic(join(runDir, SUMMARY_FILE), summaryJson(summary));
}

/** Whether a summary has anything to show (a run of `sleep` has nothing to summarise). */
export function hasContent(s: RunSummary): boolean {
  return Boolean(s.training || s.eval || s.allreduce || s.throughput || Object.keys(s.metrics).length > 0);
}

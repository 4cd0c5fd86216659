import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseMergedLine } from '../sinks/log-format.js';
import { MERGED_LOG_FILE, writeFileAtomic } from '../sinks/run-folder.js';
import { emptyRankMetrics, foldMetric, parseMetricLine, type RankMetrics } from './metrics.js';
import { summarize, type RunSummary } from './summary.js';

export const SUMMARY_FILE = 'summary.json';

/** Reads a run's merged log once and reduces what every rank reported (ranks in rank order). */
export async function summarizeRunFolder(runDir: string, record: { ranks: { label: string; role: string }[] }): Promise<RunSummary> {
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
      const ev = acc && parseMetricLine(merged.line);
      if (acc && ev) foldMetric(acc, ev);
    }
  }
  return summarize([...byLabel.values()]);
}

export function writeSummary(runDir: string, summary: RunSummary): void {
  writeFileAtomic(join(runDir, SUMMARY_FILE), JSON.stringify(summary, null, 2) + '\n');
}

/** Whether a summary has anything to show (a run of `sleep` has nothing to summarise). */
export function hasContent(s: RunSummary): boolean {
  return Boolean(s.training || s.eval || s.allreduce || s.throughput || Object.keys(s.metrics).length > 0);
}

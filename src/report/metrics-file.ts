import { join } from 'node:path';
import { writeFileAtomic } from '../run-folder/record.js';
import { RunSeriesReader, type MetricRow } from './series.js';

/**
 * metrics.jsonl (schemas/metrics.schema.json): one JSON object per metric line a rank printed, in
 * the order they arrived, flat so `pandas.read_json(path, lines=True)` gives a table. Numbers that
 * JSON cannot hold (NaN, Infinity, -Infinity: a diverged loss) are kept as those strings, never
 * dropped. metrics.csv: the same rows, with NaN / inf / -inf as pandas reads them.
 */

export const METRICS_FILE = 'metrics.jsonl';
export const METRICS_CSV_FILE = 'metrics.csv';

export type JsonNumber = number | 'NaN' | 'Infinity' | '-Infinity';

/** One metrics.jsonl line. Which fields are present depends on `kind`. */
export interface MetricsFileRow {
  time: string;
  rank: string;
  host: string;
  device: number | null;
  kind: 'train' | 'eval' | 'allreduce' | 'throughput' | 'metric';
  epoch?: number;
  step?: number;
  loss?: JsonNumber;
  fps?: JsonNumber;
  top1?: number;
  top5?: number;
  total?: number;
  metric?: 'top1' | 'top5';
  correct?: number;
  accuracy?: JsonNumber;
  imgs_per_sec?: JsonNumber;
  name?: string;
  value?: JsonNumber;
  reduce?: string;
}

export function jsonNumber(n: number): JsonNumber {
  if (Number.isFinite(n)) return n;
  if (Number.isNaN(n)) return 'NaN';
  return n > 0 ? 'Infinity' : '-Infinity';
}

/** The file's form of a parsed line; undefined for lines that carry no value (an unusable metric line). */
export function metricsFileRow(row: MetricRow): MetricsFileRow | undefined {
  const base = { time: row.time, rank: row.rank, host: row.host, device: row.device };
  const ev = row.event;
  switch (ev.kind) {
    case 'train':
      return {
        ...base,
        kind: 'train',
        epoch: ev.epoch,
        step: ev.iter,
        loss: jsonNumber(ev.loss),
        ...(ev.fps !== undefined ? { fps: jsonNumber(ev.fps) } : {}),
      };
    case 'eval-counts':
      return { ...base, kind: 'eval', top1: ev.top1, top5: ev.top5, total: ev.total };
    case 'allreduce':
      return {
        ...base,
        kind: 'allreduce',
        metric: ev.metric,
        correct: ev.correct,
        total: ev.total,
        accuracy: jsonNumber(ev.accuracy),
      };
    case 'throughput':
      return { ...base, kind: 'throughput', imgs_per_sec: jsonNumber(ev.imgsPerSec) };
    case 'metric':
      return { ...base, kind: 'metric', name: ev.name, value: jsonNumber(ev.value), reduce: ev.reduce };
    default:
      return undefined;
  }
}

function fileRows(rows: MetricRow[]): MetricsFileRow[] {
  return rows.map(metricsFileRow).filter((r): r is MetricsFileRow => r !== undefined);
}

export function metricsJsonl(rows: MetricRow[]): string {
  return fileRows(rows)
    .map((r) => JSON.stringify(r) + '\n')
    .join('');
}

export const CSV_COLUMNS = [
  'time',
  'rank',
  'host',
  'device',
  'kind',
  'epoch',
  'step',
  'loss',
  'fps',
  'top1',
  'top5',
  'total',
  'metric',
  'correct',
  'accuracy',
  'imgs_per_sec',
  'name',
  'value',
  'reduce',
] as const satisfies readonly (keyof MetricsFileRow)[];

function csvCell(v: MetricsFileRow[keyof MetricsFileRow]): string {
  if (v === undefined || v === null) return '';
  if (v === 'NaN') return 'NaN';
  if (v === 'Infinity') return 'inf';
  if (v === '-Infinity') return '-inf';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function metricsCsv(rows: MetricRow[]): string {
  const out = [CSV_COLUMNS.join(',') + '\n'];
  for (const row of fileRows(rows)) {
    out.push(CSV_COLUMNS.map((c) => csvCell(row[c])).join(',') + '\n');
  }
  return out.join('');
}

/** Writes metrics.jsonl (and metrics.csv with `csv`) into a run folder; returns the paths written. */
export function writeMetricsFiles(runDir: string, rows: MetricRow[], opts: { csv?: boolean } = {}): string[] {
  const paths = [join(runDir, METRICS_FILE)];
  writeFileAtomic(paths[0] as string, metricsJsonl(rows));
  if (opts.csv) {
    paths.push(join(runDir, METRICS_CSV_FILE));
    writeFileAtomic(paths[1] as string, metricsCsv(rows));
  }
  return paths;
}

/**
 * metrics.jsonl of a run folder, from its merged.log alone: for the launcher to call at the end of a
 * run (after the recorder closed its files; a last line without its newline counts), or on any run
 * folder, finished or left by a killed launcher. It reads neither run.json nor events (validating
 * run.json against its schema cost the launcher ~60 ms at every launch's end, for nothing).
 */
export async function writeMetrics(runDir: string, opts: { csv?: boolean } = {}): Promise<string[]> {
  const series = new RunSeriesReader(runDir);
  try {
    await series.refresh();
    series.finish();
  } finally {
    await series.close();
  }
  return writeMetricsFiles(runDir, series.rows, opts);
}

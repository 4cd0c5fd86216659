/**
 * Recognises the lines training and evaluation scripts print, as the model-zoo scripts print them,
 * plus one structured form any script can print:
 *   {"npurun":"metric","name":"top1_correct","value":123,"reduce":"sum"}
 * Pure: a line in, a metric event (or nothing) out. NaN and infinities are numbers here (a diverged
 * run prints `loss:nan`; Python's json.dumps writes `NaN`, `Infinity`), never dropped.
 */
export type Reduce = 'sum' | 'mean' | 'min' | 'max';
export const REDUCES: readonly Reduce[] = ['sum', 'mean', 'min', 'max'];

export type MetricEvent =
  | { kind: 'train'; epoch: number; iter: number; loss: number; fps?: number }
  | { kind: 'eval-counts'; top1: number; top5: number; total: number }
  | { kind: 'allreduce'; metric: 'top1' | 'top5'; correct: number; total: number; accuracy: number }
  | { kind: 'throughput'; imgsPerSec: number }
  | { kind: 'metric'; name: string; value: number; reduce: Reduce };

/** A structured metric line that cannot be used, and why. */
export interface BadMetric {
  kind: 'bad-metric';
  message: string;
}

/** A number as scripts print it, including nan, inf, -inf, NaN, Infinity. */
const NUM = String.raw`[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)`;
const TRAIN = new RegExp(
  String.raw`epoch\[(\d+)\],\s*iter\[(\d+)\],\s*loss:\s*(${NUM})(?:,\s*mean_fps:\s*(${NUM}))?`,
  'i',
);
const BEFORE = /before results\s*=\s*\[\s*\[\s*(\d+)\s*\]\s*,\s*\[\s*(\d+)\s*\]\s*,\s*\[\s*(\d+)\s*\]\s*\]/;
// The README's form (no acc=) and the model zoo's (",acc=79.57%(TOP1)", ", acc=79.57%").
const AFTER = new RegExp(
  String.raw`after allreduce eval:\s*top_?([15])_correct\s*=\s*(\d+)\s*,\s*tot\s*=\s*(\d+)(?:\s*,\s*acc\s*=\s*(${NUM})\s*%)?`,
  'i',
);
const PERF = new RegExp(String.raw`Inference Performance:\s*(${NUM})\s*img/sec`, 'i');

/** Parses a number token as printed (Python's nan/inf spellings included). */
export function parseNumber(text: string): number {
  const t = text.toLowerCase().replace(/^\+/, '');
  if (t === 'nan' || t === '-nan') return NaN;
  if (t === 'inf' || t === 'infinity') return Infinity;
  if (t === '-inf' || t === '-infinity') return -Infinity;
  return Number(text);
}

/** The metric event of a line, if any; a malformed structured metric line gives nothing (see `readMetricLine`). */
export function parseMetricLine(line: string): MetricEvent | undefined {
  const ev = readMetricLine(line);
  return ev?.kind === 'bad-metric' ? undefined : ev;
}

/** `parseMetricLine`, telling why a structured metric line cannot be used. */
export function readMetricLine(line: string): MetricEvent | BadMetric | undefined {
  if (line.includes('"npurun"')) return parseStructured(line);
  let m = TRAIN.exec(line);
  if (m) {
    const ev: MetricEvent = {
      kind: 'train',
      epoch: Number(m[1]),
      iter: Number(m[2]),
      loss: parseNumber(m[3] as string),
    };
    if (m[4] !== undefined) ev.fps = parseNumber(m[4]);
    return ev;
  }
  m = BEFORE.exec(line);
  if (m) return { kind: 'eval-counts', top1: Number(m[1]), top5: Number(m[2]), total: Number(m[3]) };
  m = AFTER.exec(line);
  if (m) {
    const correct = Number(m[2]);
    const total = Number(m[3]);
    const accuracy = m[4] !== undefined ? parseNumber(m[4]) : total === 0 ? 0 : (100 * correct) / total;
    return { kind: 'allreduce', metric: m[1] === '1' ? 'top1' : 'top5', correct, total, accuracy };
  }
  m = PERF.exec(line);
  if (m) return { kind: 'throughput', imgsPerSec: parseNumber(m[1] as string) };
  return undefined;
}

// Python's json.dumps writes NaN, Infinity and -Infinity bare; JSON.parse refuses them.
const BARE_NON_FINITE = /([:,[]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g;
const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
const MARK = '@@npurun-non-finite:';

function parseJsonObject(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const marked = text.replace(BARE_NON_FINITE, (_, before: string, token: string) => `${before}"${MARK}${token}"`);
    return JSON.parse(marked, (_key, v: unknown) =>
      typeof v === 'string' && v.startsWith(MARK) ? NON_FINITE[v.slice(MARK.length)] : v,
    );
  }
}

function parseStructured(line: string): MetricEvent | BadMetric | undefined {
  const start = line.indexOf('{');
  if (start === -1) return undefined;
  let obj: unknown;
  try {
    obj = parseJsonObject(line.slice(start));
  } catch {
    return line.includes('"metric"') ? { kind: 'bad-metric', message: 'not valid JSON' } : undefined;
  }
  if (typeof obj !== 'object' || obj === null) return undefined;
  const o = obj as Record<string, unknown>;
  if (o.npurun !== 'metric') return undefined;
  if (typeof o.name !== 'string' || o.name === '') return { kind: 'bad-metric', message: 'no "name" string' };
  if (typeof o.value !== 'number')
    return { kind: 'bad-metric', message: `metric ${o.name}: value ${JSON.stringify(o.value)} is not a number` };
  if (typeof o.reduce !== 'string' || !(REDUCES as readonly string[]).includes(o.reduce)) {
    return {
      kind: 'bad-metric',
      message: `metric ${o.name}: reduce ${o.reduce === undefined ? 'missing' : JSON.stringify(o.reduce)}; expected one of ${REDUCES.join(', ')}`,
    };
  }
  return { kind: 'metric', name: o.name, value: o.value, reduce: o.reduce as Reduce };
}

/** A value that is not a finite number, where it was seen. */
export interface NonFinite {
  what: string;
  value: number;
  line: number;
}

/** What one rank reported, folded from its metric events in order. */
export interface RankMetrics {
  label: string;
  lastTrain?: { epoch: number; iter: number; loss: number; fps?: number };
  trainLines: number;
  evalCounts?: { top1: number; top5: number; total: number };
  allreduce: {
    top1?: { correct: number; total: number; accuracy: number };
    top5?: { correct: number; total: number; accuracy: number };
  };
  imgsPerSec?: number;
  /** Structured metrics: the last value of each name, with its reduction and the line it came from. */
  metrics: Record<string, { value: number; reduce: Reduce; line: number }>;
  /** The first NaN or infinite value the rank printed (loss, fps, a metric): a diverged run. */
  nonFinite?: NonFinite;
  /** Metric lines that could not be used, each naming its line (the rank's own log line number). */
  warnings: string[];
}

export function emptyRankMetrics(label: string): RankMetrics {
  return { label, trainLines: 0, allreduce: {}, metrics: {}, warnings: [] };
}

const MAX_WARNINGS = 20;

function noteNonFinite(acc: RankMetrics, what: string, value: number, line: number): void {
  if (!Number.isFinite(value) && !acc.nonFinite) acc.nonFinite = { what, value, line };
}

/** Folds one event into a rank's metrics; `line` is its line number in the rank's log. */
export function foldMetric(acc: RankMetrics, ev: MetricEvent | BadMetric, line = 0): RankMetrics {
  switch (ev.kind) {
    case 'train':
      acc.lastTrain = {
        epoch: ev.epoch,
        iter: ev.iter,
        loss: ev.loss,
        ...(ev.fps !== undefined ? { fps: ev.fps } : {}),
      };
      acc.trainLines++;
      noteNonFinite(acc, `loss at epoch ${ev.epoch}, iter ${ev.iter}`, ev.loss, line);
      if (ev.fps !== undefined) noteNonFinite(acc, `fps at epoch ${ev.epoch}, iter ${ev.iter}`, ev.fps, line);
      break;
    case 'eval-counts':
      acc.evalCounts = { top1: ev.top1, top5: ev.top5, total: ev.total };
      break;
    case 'allreduce':
      acc.allreduce[ev.metric] = { correct: ev.correct, total: ev.total, accuracy: ev.accuracy };
      break;
    case 'throughput':
      acc.imgsPerSec = ev.imgsPerSec;
      noteNonFinite(acc, 'inference throughput', ev.imgsPerSec, line);
      break;
    case 'metric':
      acc.metrics[ev.name] = { value: ev.value, reduce: ev.reduce, line };
      noteNonFinite(acc, `metric ${ev.name}`, ev.value, line);
      break;
    case 'bad-metric':
      if (acc.warnings.length < MAX_WARNINGS)
        acc.warnings.push(`rank ${acc.label}, line ${line}: ${ev.message}; line ignored`);
      break;
  }
  return acc;
}

/** Folds a whole rank's output (e.g. its log file) into its metrics. */
export function rankMetricsFromLines(label: string, lines: Iterable<string>): RankMetrics {
  let acc = emptyRankMetrics(label);
  let n = 0;
  for (const line of lines) {
    n++;
    const ev = readMetricLine(line);
    if (ev) acc = foldMetric(acc, ev, n);
  }
  return acc;
}

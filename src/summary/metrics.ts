/**
 * Recognises the lines training and evaluation scripts print, as the model-zoo scripts print them,
 * plus one structured form any script can print:
 *   {"npurun":"metric","name":"top1_correct","value":123,"reduce":"sum"}
 * Pure: a line in, a metric event (or nothing) out.
 */
export type Reduce = 'sum' | 'mean' | 'min' | 'max' | 'last';

export type MetricEvent =
  | { kind: 'train'; epoch: number; iter: number; loss: number; fps?: number }
  | { kind: 'eval-counts'; top1: number; top5: number; total: number }
  | { kind: 'allreduce'; metric: 'top1' | 'top5'; correct: number; total: number; accuracy: number }
  | { kind: 'throughput'; imgsPerSec: number }
  | { kind: 'metric'; name: string; value: number; reduce: Reduce };

const NUM = String.raw`[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`;
const TRAIN = new RegExp(String.raw`epoch\[(\d+)\],\s*iter\[(\d+)\],\s*loss:\s*(${NUM})(?:,\s*mean_fps:\s*(${NUM}))?`);
const BEFORE = /before results=\[\[(\d+)\],\s*\[(\d+)\],\s*\[(\d+)\]\]/;
const AFTER = new RegExp(String.raw`after allreduce eval:\s*top([15])_correct=(\d+),\s*tot=(\d+),\s*acc=(${NUM})%`);
const PERF = new RegExp(String.raw`Inference Performance:\s*(${NUM})\s*img/sec`);
const REDUCES: readonly Reduce[] = ['sum', 'mean', 'min', 'max', 'last'];

export function parseMetricLine(line: string): MetricEvent | undefined {
  if (line.includes('"npurun"')) return parseStructured(line);
  let m = TRAIN.exec(line);
  if (m) {
    const ev: MetricEvent = { kind: 'train', epoch: Number(m[1]), iter: Number(m[2]), loss: Number(m[3]) };
    if (m[4] !== undefined) ev.fps = Number(m[4]);
    return ev;
  }
  m = BEFORE.exec(line);
  if (m) return { kind: 'eval-counts', top1: Number(m[1]), top5: Number(m[2]), total: Number(m[3]) };
  m = AFTER.exec(line);
  if (m) return { kind: 'allreduce', metric: m[1] === '1' ? 'top1' : 'top5', correct: Number(m[2]), total: Number(m[3]), accuracy: Number(m[4]) };
  m = PERF.exec(line);
  if (m) return { kind: 'throughput', imgsPerSec: Number(m[1]) };
  return undefined;
}

function parseStructured(line: string): MetricEvent | undefined {
  const start = line.indexOf('{');
  if (start === -1) return undefined;
  let obj: unknown;
  try {
    obj = JSON.parse(line.slice(start));
  } catch {
    return undefined;
  }
  if (typeof obj !== 'object' || obj === null) return undefined;
  const o = obj as Record<string, unknown>;
  if (o.npurun !== 'metric' || typeof o.name !== 'string' || typeof o.value !== 'number' || !Number.isFinite(o.value)) return undefined;
  const reduce = typeof o.reduce === 'string' && (REDUCES as readonly string[]).includes(o.reduce) ? (o.reduce as Reduce) : 'last';
  return { kind: 'metric', name: o.name, value: o.value, reduce };
}

/** What one rank reported, folded from its metric events in order. */
export interface RankMetrics {
  label: string;
  lastTrain?: { epoch: number; iter: number; loss: number; fps?: number };
  trainLines: number;
  evalCounts?: { top1: number; top5: number; total: number };
  allreduce: { top1?: { correct: number; total: number; accuracy: number }; top5?: { correct: number; total: number; accuracy: number } };
  imgsPerSec?: number;
  /** Structured metrics: the last value of each name, with its reduction. */
  metrics: Record<string, { value: number; reduce: Reduce }>;
}

export function emptyRankMetrics(label: string): RankMetrics {
  return { label, trainLines: 0, allreduce: {}, metrics: {} };
}

export function foldMetric(acc: RankMetrics, ev: MetricEvent): RankMetrics {
  switch (ev.kind) {
    case 'train':
      acc.lastTrain = { epoch: ev.epoch, iter: ev.iter, loss: ev.loss, ...(ev.fps !== undefined ? { fps: ev.fps } : {}) };
      acc.trainLines++;
      break;
    case 'eval-counts':
      acc.evalCounts = { top1: ev.top1, top5: ev.top5, total: ev.total };
      break;
    case 'allreduce':
      acc.allreduce[ev.metric] = { correct: ev.correct, total: ev.total, accuracy: ev.accuracy };
      break;
    case 'throughput':
      acc.imgsPerSec = ev.imgsPerSec;
      break;
    case 'metric':
      acc.metrics[ev.name] = { value: ev.value, reduce: ev.reduce };
      break;
  }
  return acc;
}

/** Folds a whole rank's output (e.g. its log file) into its metrics. */
export function rankMetricsFromLines(label: string, lines: Iterable<string>): RankMetrics {
  let acc = emptyRankMetrics(label);
  for (const line of lines) {
    const ev = parseMetricLine(line);
    if (ev) acc = foldMetric(acc, ev);
  }
  return acc;
}

import type { MetricRow } from './series.js';

/**
 * The report's plot data: per-rank loss and throughput aligned on the union of steps (the shape
 * uPlot draws: one x array, one y array per series, null where a rank printed nothing), the median
 * across ranks per step, total throughput over time, and the ranks that stand out.
 */

export interface ChartData {
  /** One per rank series, in rank order. */
  labels: string[];
  steps: number[];
  loss: (number | null)[][];
  fps: (number | null)[][];
  lossMedian: (number | null)[];
  fpsMedian: (number | null)[];
  /** Training lines per rank (before any thinning for the page). */
  points: number[];
  /** 1 when every step is drawn; k when only every k-th step is (very long runs). */
  stride: number;
  /** Seconds since the run started, and the sum over ranks of each one's latest fps then. */
  total: { t: number[]; fps: number[] };
  outliers: { label: string; chart: 'loss' | 'fps'; why: string }[];
  /** NaN / inf values: kept out of the plots (they cannot be drawn), listed here. */
  nonFinite: { label: string; step: number; field: 'loss' | 'fps'; value: string }[];
}

/** Enough for any screen; more steps are thinned to every k-th (the last one always kept). */
export const MAX_STEPS_DRAWN = 1500;
const MAX_TOTAL_POINTS = 1000;
/** A rank this much slower than the median fps is named. */
const SLOW_FACTOR = 1.3;

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function finiteOrNull(v: number | undefined): number | null {
  return v !== undefined && Number.isFinite(v) ? v : null;
}

function fmt(n: number): string {
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(3);
}

/** Per step, the median over ranks; none where fewer than half the ranks reported (a live run's newest step). */
function columnMedians(series: (number | null)[][], width: number): (number | null)[] {
  const quorum = Math.ceil(series.length / 2);
  const out: (number | null)[] = [];
  for (let i = 0; i < width; i++) {
    const column: number[] = [];
    for (const s of series) {
      const v = s[i];
      if (v !== null && v !== undefined) column.push(v);
    }
    out.push(column.length >= quorum ? (median(column) ?? null) : null);
  }
  return out;
}

function thin<T>(values: T[], keep: number[]): T[] {
  return keep.map((i) => values[i] as T);
}

function outliersOf(labels: string[], loss: (number | null)[][], fps: (number | null)[][]): ChartData['outliers'] {
  const out: ChartData['outliers'] = [];
  const lastLoss = loss.map((s) => [...s].reverse().find((v) => v !== null) ?? null);
  const finiteLast = lastLoss.filter((v): v is number => v !== null);
  const m = median(finiteLast);
  if (m !== undefined && finiteLast.length >= 3) {
    const mad = median(finiteLast.map((v) => Math.abs(v - m))) ?? 0;
    const limit = Math.max(3 * 1.4826 * mad, 0.1 * Math.abs(m));
    lastLoss.forEach((v, i) => {
      if (v !== null && Math.abs(v - m) > limit)
        out.push({ label: labels[i] as string, chart: 'loss', why: `last loss ${fmt(v)}, median ${fmt(m)}` });
    });
  }
  const recentFps = fps.map((s) => {
    const recent = s.filter((v): v is number => v !== null).slice(-10);
    return recent.length > 0 ? recent.reduce((a, b) => a + b, 0) / recent.length : null;
  });
  const finiteFps = recentFps.filter((v): v is number => v !== null);
  const mf = median(finiteFps);
  if (mf !== undefined && mf > 0 && finiteFps.length >= 2) {
    recentFps.forEach((v, i) => {
      if (v !== null && v * SLOW_FACTOR < mf)
        out.push({
          label: labels[i] as string,
          chart: 'fps',
          why: `${(v / mf).toFixed(2)}x the median fps (${fmt(v)} vs ${fmt(mf)})`,
        });
    });
  }
  return out;
}

function totalThroughput(rows: MetricRow[], startedMs: number): ChartData['total'] {
  const latest = new Map<string, number>();
  let sum = 0;
  const t: number[] = [];
  const fps: number[] = [];
  for (const row of rows) {
    const ev = row.event;
    if (ev.kind !== 'train' || ev.fps === undefined || !Number.isFinite(ev.fps)) continue;
    sum += ev.fps - (latest.get(row.rank) ?? 0);
    latest.set(row.rank, ev.fps);
    const sec = (Date.parse(row.time) - startedMs) / 1000;
    // Lines of one moment (all ranks print together) make one point: the last sum of that moment.
    if (t.length > 0 && t[t.length - 1] === sec) fps[fps.length - 1] = sum;
    else {
      t.push(sec);
      fps.push(sum);
    }
  }
  if (t.length <= MAX_TOTAL_POINTS) return { t, fps };
  // Bucketed in time: each bucket keeps its last point.
  const span = (t[t.length - 1] as number) - (t[0] as number) || 1;
  const out: ChartData['total'] = { t: [], fps: [] };
  let lastBucket = -1;
  for (let i = 0; i < t.length; i++) {
    const bucket = Math.floor((((t[i] as number) - (t[0] as number)) / span) * (MAX_TOTAL_POINTS - 1));
    if (bucket === lastBucket) {
      out.t[out.t.length - 1] = t[i] as number;
      out.fps[out.fps.length - 1] = fps[i] as number;
    } else {
      out.t.push(t[i] as number);
      out.fps.push(fps[i] as number);
      lastBucket = bucket;
    }
  }
  return out;
}

export function chartData(labels: string[], rows: MetricRow[], startedMs: number): ChartData {
  const index = new Map(labels.map((l, i) => [l, i]));
  const stepSet = new Set<number>();
  for (const row of rows) if (row.event.kind === 'train' && index.has(row.rank)) stepSet.add(row.event.iter);
  const allSteps = [...stepSet].sort((a, b) => a - b);
  const col = new Map(allSteps.map((s, i) => [s, i]));
  const loss = labels.map(() => new Array<number | null>(allSteps.length).fill(null));
  const fps = labels.map(() => new Array<number | null>(allSteps.length).fill(null));
  const points = labels.map(() => 0);
  const nonFinite: ChartData['nonFinite'] = [];
  for (const row of rows) {
    const ev = row.event;
    const r = index.get(row.rank);
    if (ev.kind !== 'train' || r === undefined) continue;
    const c = col.get(ev.iter) as number;
    points[r] = (points[r] as number) + 1;
    (loss[r] as (number | null)[])[c] = finiteOrNull(ev.loss);
    (fps[r] as (number | null)[])[c] = finiteOrNull(ev.fps);
    if (!Number.isFinite(ev.loss))
      nonFinite.push({ label: row.rank, step: ev.iter, field: 'loss', value: String(ev.loss) });
    if (ev.fps !== undefined && !Number.isFinite(ev.fps))
      nonFinite.push({ label: row.rank, step: ev.iter, field: 'fps', value: String(ev.fps) });
  }
  const stride = Math.max(1, Math.ceil(allSteps.length / MAX_STEPS_DRAWN));
  const keep = allSteps.map((_, i) => i).filter((i) => i % stride === 0 || i === allSteps.length - 1);
  const drawnLoss = stride === 1 ? loss : loss.map((s) => thin(s, keep));
  const drawnFps = stride === 1 ? fps : fps.map((s) => thin(s, keep));
  const outliers = outliersOf(labels, loss, fps);
  const seen = new Set<string>();
  for (const n of nonFinite) {
    if (seen.has(`${n.label}:${n.field}`)) continue;
    seen.add(`${n.label}:${n.field}`);
    outliers.unshift({ label: n.label, chart: n.field, why: `${n.field} ${n.value} first at step ${n.step}` });
  }
  return {
    labels,
    steps: stride === 1 ? allSteps : thin(allSteps, keep),
    loss: drawnLoss,
    fps: drawnFps,
    lossMedian: columnMedians(drawnLoss, keep.length),
    fpsMedian: columnMedians(drawnFps, keep.length),
    points,
    stride,
    total: totalThroughput(rows, startedMs),
    outliers,
    nonFinite,
  };
}

import { readRunLog } from '../run-folder/log-reader.js';
import { DEFAULT_PROGRESS_PATTERN } from '../supervise/hang.js';

/**
 * Stragglers: ranks consistently slower than the others. A rank's step time is read from what it says
 * (the model zoo's `per step time: 123.4 ms`, or `{"npurun":"metric","name":"step_time","value":S}`),
 * else from the arrival times of its progress lines in merged.log. Over each rank's last `window`
 * steps the median step time is taken; a rank whose median is `factor` times the median of all ranks'
 * medians or more is named. Pure apart from reading merged.log.
 */
export interface Straggler {
  label: string;
  host: string;
  device: number | null;
  /** The rank's median step time over the window, and the run's (median of ranks' medians), in ms. */
  medianMs: number;
  runMedianMs: number;
  ratio: number;
  steps: number;
}

export interface StragglerOptions {
  window?: number;
  factor?: number;
  /** Fewer steps than this in the window: not judged. */
  minSteps?: number;
}

export interface RankTimes {
  host: string;
  device: number | null;
  /** Step times the rank printed (ms). */
  said: number[];
  /** Arrival times of its progress lines (ms since epoch). */
  progress: number[];
}

const PER_STEP = /per step time:\s*([\d.]+)\s*ms/i;
const METRIC = /"npurun"\s*:\s*"metric".*"name"\s*:\s*"step_time".*"value"\s*:\s*([\d.eE+-]+)/;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Judges ranks from their step times (pure). */
export function judgeStragglers(times: Map<string, RankTimes>, opts: StragglerOptions = {}): Straggler[] {
  const window = opts.window ?? 50;
  const factor = opts.factor ?? 1.3;
  const minSteps = opts.minSteps ?? 5;
  const medians = new Map<string, { ms: number; steps: number }>();
  for (const [label, t] of times) {
    const steps =
      t.said.length >= minSteps ? t.said : t.progress.slice(1).map((at, i) => at - (t.progress[i] as number));
    const last = steps.slice(-window);
    if (last.length >= minSteps) medians.set(label, { ms: median(last), steps: last.length });
  }
  if (medians.size < 2) return [];
  const runMedian = median([...medians.values()].map((m) => m.ms));
  if (runMedian <= 0) return [];
  return [...medians]
    .filter(([, m]) => m.ms >= factor * runMedian)
    .map(([label, m]) => {
      const t = times.get(label) as RankTimes;
      return {
        label,
        host: t.host,
        device: t.device,
        medianMs: m.ms,
        runMedianMs: runMedian,
        ratio: m.ms / runMedian,
        steps: m.steps,
      };
    })
    .sort((a, b) => b.ratio - a.ratio);
}

/** Reads a run's merged.log and names its stragglers. */
export async function findStragglers(
  runDir: string,
  opts: StragglerOptions & { progressPattern?: string } = {},
): Promise<Straggler[]> {
  const progress = progressRegExp(opts.progressPattern);
  const times = new Map<string, RankTimes>();
  await readRunLog(runDir, { filter: {} }, async (lines) => {
    for (const l of lines) {
      let t = times.get(l.label);
      if (!t) {
        t = { host: l.host, device: l.device, said: [], progress: [] };
        times.set(l.label, t);
      }
      noteStepTime(t, l.line, l.time, progress);
    }
  });
  return judgeStragglers(times, opts);
}

/**
 * One line of a rank into its step times: a step time it says, else the arrival time (ISO) of a
 * progress line. Shared by `findStragglers` (merged.log) and the launcher (lines as they arrive).
 */
export function noteStepTime(t: RankTimes, line: string, time: string, progress: RegExp): void {
  const said = PER_STEP.exec(line) ?? null;
  const metric = said ? null : METRIC.exec(line);
  if (said) t.said.push(Number(said[1]));
  else if (metric) t.said.push(Number(metric[1]) * 1000);
  else if (progress.test(line)) t.progress.push(Date.parse(time));
  // Only the window is judged: keep the lists short however long the run.
  if (t.said.length > 400) t.said.splice(0, 200);
  if (t.progress.length > 400) t.progress.splice(0, 200);
}

/** The progress-line pattern: the job's own (as written), else the default (any case). */
export function progressRegExp(pattern: string | undefined): RegExp {
  return new RegExp(pattern ?? DEFAULT_PROGRESS_PATTERN, pattern ? '' : 'i');
}

/** `straggler: rank 11 (host b, dev 3) 2.0x the median step time over the last 50 steps` lines. */
export function renderStragglers(list: Straggler[]): string[] {
  return list.map(
    (s) =>
      `straggler: rank ${s.label} (host ${s.host}${s.device === null ? '' : `, dev ${s.device}`}) ${s.ratio.toFixed(1)}x the median step time over the last ${s.steps} steps (${s.medianMs.toFixed(0)} ms vs ${s.runMedianMs.toFixed(0)} ms)`,
  );
}

import { rankSet } from '../run-folder/collapse.js';
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
  /** Steps noted so far (step times said, or progress lines): how far along the rank is. */
  steps?: number;
}

const PER_STEP = /per step time:\s*([\d.]+)\s*ms/i;
const METRIC = /"npurun"\s*:\s*"metric".*"name"\s*:\s*"step_time".*"value"\s*:\s*([\d.eE+-]+)/;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Judges ranks from their step times (pure). */
export function judgeStragglers(times: ReadonlyMap<string, RankTimes>, opts: StragglerOptions = {}): Straggler[] {
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
  else return;
  t.steps = (t.steps ?? 0) + 1;
  // Only the window is judged: keep the lists short however long the run.
  if (t.said.length > 400) t.said.splice(0, 200);
  if (t.progress.length > 400) t.progress.splice(0, 200);
}

/** The progress-line pattern: the job's own (as written), else the default (any case). */
export function progressRegExp(pattern: string | undefined): RegExp {
  return new RegExp(pattern ?? DEFAULT_PROGRESS_PATTERN, pattern ? '' : 'i');
}

export interface StragglerWatchOptions extends StragglerOptions {
  /** A rank named once is named again only after this long (default 5 minutes). */
  repeatMs?: number;
  /** At most this many lines per check, one per host; the rest in one counting line (default 4). */
  maxLines?: number;
}

/**
 * Stragglers while the run goes: `check` (every few seconds, on the step times gathered so far) returns
 * console lines for ranks that fell behind since they were last named, one line per host (`straggler:
 * rank 11 (host b, dev 3) 2.0x ...`, `straggler: host b, ranks 8-15 (dev 0-7) ...`), at most
 * `maxLines`, then one line counting the rest: a slow rack of a 1024-rank run is a few lines, and a
 * rank still slow is named again only after `repeatMs`.
 */
export class StragglerWatch {
  private readonly named = new Map<string, number>();

  constructor(private readonly opts: StragglerWatchOptions = {}) {}

  /** Ranks newly behind at `now`, as console lines (none most of the time). */
  check(times: ReadonlyMap<string, RankTimes>, now: number): string[] {
    const repeat = this.opts.repeatMs ?? 300_000;
    const fresh = judgeStragglers(times, { minSteps: 10, ...this.opts }).filter(
      (s) => now - (this.named.get(s.label) ?? -Infinity) >= repeat,
    );
    if (fresh.length === 0) return [];
    for (const s of fresh) this.named.set(s.label, now);
    const steps = [...times.values()].map((t) => t.steps ?? 0).sort((a, b) => a - b);
    const medianSteps = steps[steps.length >> 1] ?? 0;
    const byHost = new Map<string, Straggler[]>();
    for (const s of fresh) byHost.set(s.host, [...(byHost.get(s.host) ?? []), s]);
    const hosts = [...byHost.values()].sort((a, b) => b.length - a.length);
    const max = this.opts.maxLines ?? 4;
    const lines = hosts.slice(0, max).map((group) => describeBehind(group, times, medianSteps));
    const rest = hosts.slice(max);
    if (rest.length > 0) {
      const n = rest.reduce((k, g) => k + g.length, 0);
      const names = rest.slice(0, 8).map((g) => (g[0] as Straggler).host);
      lines.push(
        `straggler: ${n} more rank${n === 1 ? '' : 's'} on ${rest.length} more host${rest.length === 1 ? '' : 's'} behind (${names.join(', ')}${rest.length > 8 ? ', ...' : ''}); \`npurun summary\` lists them`,
      );
    }
    return lines;
  }
}

/** One host's ranks that fell behind, in one line: who, how much slower, how many steps behind the median rank. */
function describeBehind(group: Straggler[], times: ReadonlyMap<string, RankTimes>, medianSteps: number): string {
  const first = group[0] as Straggler;
  const ratios = group.map((s) => s.ratio.toFixed(1));
  const [lo, hi] = [
    ratios.reduce((a, b) => (Number(a) < Number(b) ? a : b)),
    ratios.reduce((a, b) => (Number(a) > Number(b) ? a : b)),
  ];
  const ms = group.reduce((k, s) => k + s.medianMs, 0) / group.length;
  const behind = Math.max(0, ...group.map((s) => medianSteps - (times.get(s.label)?.steps ?? 0)));
  const devices = group.map((s) => s.device).filter((d): d is number => d !== null);
  const labels = group.map((s) => (/^\d+$/.test(s.label) ? Number(s.label) : s.label));
  const who =
    group.length === 1
      ? `rank ${first.label} (host ${first.host}${first.device === null ? '' : `, dev ${first.device}`})`
      : `host ${first.host}, ranks ${rankSet(labels).slice(1)}${devices.length ? ` (dev ${rankSet(devices).slice(1)})` : ''}`;
  return `straggler: ${who} ${lo === hi ? hi : `${lo}-${hi}`}x the median step time (${ms.toFixed(0)} ms vs ${first.runMedianMs.toFixed(0)} ms)${behind > 0 ? `, ${behind} step${behind === 1 ? '' : 's'} behind` : ''}`;
}

/** `straggler: rank 11 (host b, dev 3) 2.0x the median step time over the last 50 steps` lines. */
export function renderStragglers(list: Straggler[]): string[] {
  return list.map(
    (s) =>
      `straggler: rank ${s.label} (host ${s.host}${s.device === null ? '' : `, dev ${s.device}`}) ${s.ratio.toFixed(1)}x the median step time over the last ${s.steps} steps (${s.medianMs.toFixed(0)} ms vs ${s.runMedianMs.toFixed(0)} ms)`,
  );
}

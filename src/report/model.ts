import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inputError } from '../errors.js';
import { classifyFailure } from '../supervise/classify.js';
import {
  displayStatus,
  EVENTS_FILE,
  launcherState,
  RUN_RECORD_FILE,
  runRecordProblem,
  type RankExitRecord,
  type RunRecord,
} from '../run-folder/record.js';
import { emptyRankMetrics, foldMetric, type RankMetrics } from '../summary/metrics.js';
import { findStragglers, type Straggler } from '../summary/stragglers.js';
import { summarize, type RunSummary } from '../summary/summary.js';
import { describeEnd } from '../supervise/supervisor.js';
import { chartData, type ChartData } from './charts.js';
import { checkpointSteps, timeline, type CheckpointStep, type RunEvent, type TimelineEntry } from './timeline.js';
import { RunSeriesReader } from './series.js';

/**
 * Everything the report page shows, as one JSON-able object: a pure function of the run folder
 * (run.json, events.jsonl, merged.log). The page and the dashboard both render this.
 */

export type RankState = 'running' | 'ok' | 'failed' | 'root-cause' | 'stopped' | 'hang' | 'straggler' | 'unknown';

export interface ReportRank {
  label: string;
  rank: number;
  host: string;
  localRank: number;
  device: number | null;
  role: string;
  state: RankState;
  /** The rank whose failure stopped the run (its cell is ringed whatever its state). */
  root: boolean;
  /** How it ended, in words ("exited with code 7"); absent while it runs. */
  end?: string;
  lines: number;
  lastLines: string[];
}

export interface ReportData {
  generatedAt: string;
  run: {
    id: string;
    command: string[];
    hosts: string[];
    worldSize: number;
    profile: string;
    /** As `npurun runs` shows it: a "running" record whose launcher died is not running. */
    status: string;
    exitCode: number | null;
    startedAt: string;
    endedAt: string | null;
    durationMs: number;
    /** run.json's `attempts` when the launcher records restarts; absent otherwise. */
    attempts?: unknown[];
    /** Whether the run can still change (the dashboard keeps polling). */
    live: boolean;
  };
  ranks: ReportRank[];
  charts: ChartData;
  eval: {
    perRank: { label: string; top1: number; top5: number; total: number }[];
    summary: Omit<RunSummary, 'ranks'>;
    /** "agrees": in-script allreduce checked against every rank and the per-rank sums. */
    verdict: 'agrees' | 'mismatch' | 'none';
  };
  timeline: TimelineEntry[];
  /** Drawn on the loss chart as vertical lines (dashed where not every saving rank completed). */
  checkpoints: CheckpointStep[];
  rootCause?: {
    label: string;
    host: string;
    device: number | null;
    end: string;
    classification?: string;
    lastLines: string[];
  };
}

function rankState(exit: RankExitRecord | null, live: boolean): RankState {
  if (!exit) return live ? 'running' : 'unknown';
  // A hung rank is shown as such; being the root cause is marked on its cell too (`root`).
  if ((exit.cause as string) === 'hang') return 'hang';
  if (exit.root_cause) return 'root-cause';
  if (exit.cause === 'stopped') return 'stopped';
  if (exit.cause === 'exited' && exit.code === 0) return 'ok';
  return 'failed';
}

/** Labels that events name as hung or straggling (the resilience work records these). */
function flaggedLabels(events: RunEvent[], word: 'hang' | 'straggler'): Set<string> {
  const out = new Set<string>();
  for (const e of events) {
    if (!e.event.includes(word)) continue;
    if (typeof e.label === 'string') out.add(e.label);
    for (const list of [e.labels, e.culprits])
      if (Array.isArray(list)) for (const l of list) if (typeof l === 'string') out.add(l);
  }
  return out;
}

export async function readRunRecordFile(runDir: string): Promise<RunRecord> {
  const path = join(runDir, RUN_RECORD_FILE);
  let record: unknown;
  try {
    record = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw inputError(
      path,
      `cannot read the run record (${(err as Error).message}); expected run.json as npurun launch writes it`,
    );
  }
  const problem = runRecordProblem(record);
  if (problem) throw inputError(path, problem);
  return record as RunRecord;
}

export async function readEvents(runDir: string): Promise<RunEvent[]> {
  let text: string;
  try {
    text = await readFile(join(runDir, EVENTS_FILE), 'utf8');
  } catch {
    return [];
  }
  const out: RunEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as RunEvent;
      if (e && typeof e.event === 'string' && typeof e.time === 'string') out.push(e);
    } catch {
      // A line being written as we read: the next refresh sees it whole.
    }
  }
  return out;
}

/** Whether anything may still write to the run folder. */
export function runIsLive(record: RunRecord): boolean {
  return record.status === 'running' && launcherState(record) !== 'gone';
}

/**
 * Builds the page's data from what the run folder holds now (`series` read up to now). Stragglers:
 * those events name, and those `npurun summary` finds from step times (when given).
 */
export function buildReportData(
  record: RunRecord,
  events: RunEvent[],
  series: RunSeriesReader,
  now = new Date(),
  stragglers: Straggler[] = [],
): ReportData {
  const live = runIsLive(record);
  const hang = flaggedLabels(events, 'hang');
  const straggler = flaggedLabels(events, 'straggler');
  for (const s of stragglers) straggler.add(s.label);
  const ranks: ReportRank[] = record.ranks.map((r) => {
    let state = rankState(r.exit, live);
    if (
      hang.has(r.label) &&
      (state === 'running' || state === 'stopped' || state === 'unknown' || state === 'root-cause')
    )
      state = 'hang';
    // Only a rank still going or done well is called slow: stopped or failed says more.
    else if (straggler.has(r.label) && (state === 'running' || state === 'ok')) state = 'straggler';
    return {
      label: r.label,
      rank: r.rank,
      host: r.host,
      localRank: r.local_rank,
      device: r.device_id,
      role: r.role,
      state,
      root: r.exit?.root_cause === true,
      ...(r.exit ? { end: describeEnd(r.exit) } : {}),
      lines: series.lineCounts.get(r.label) ?? 0,
      lastLines: series.lastLines.get(r.label) ?? [],
    };
  });

  const workers = record.ranks.filter((r) => r.role !== 'scheduler');
  const metrics = new Map<string, RankMetrics>(workers.map((r) => [r.label, emptyRankMetrics(r.label)]));
  for (const row of series.rows) {
    const acc = metrics.get(row.rank);
    if (acc) foldMetric(acc, row.event, row.line);
  }
  const datasetSize = (record.job as { evalDatasetSize?: number } | undefined)?.evalDatasetSize;
  const { ranks: summaryRanks, ...summary } = summarize(
    [...metrics.values()],
    datasetSize !== undefined ? { datasetSize } : {},
  );
  const perRank = summaryRanks.flatMap((m) => (m.evalCounts ? [{ label: m.label, ...m.evalCounts }] : []));
  // The allreduce verdict alone: a NaN loss is a problem of the run, not of the cross-check.
  const reported = summaryRanks.some((m) => m.allreduce.top1 || m.allreduce.top5);
  const verdict = !reported ? 'none' : summary.problems.some((p) => /allreduce/i.test(p)) ? 'mismatch' : 'agrees';

  const started = Date.parse(record.started_at);
  const ended = record.ended_at ? Date.parse(record.ended_at) : now.getTime();
  const data: ReportData = {
    generatedAt: now.toISOString(),
    run: {
      id: record.run_id,
      command: record.job?.command ?? [],
      hosts: (record.inventory ?? []).map((h) => h.name),
      worldSize: record.world_size,
      profile: record.job?.profile ?? '',
      status: displayStatus(record),
      exitCode: record.exit_code,
      startedAt: record.started_at,
      endedAt: record.ended_at,
      durationMs: Math.max(0, ended - started),
      live,
    },
    ranks,
    charts: chartData(
      workers.map((r) => r.label),
      series.rows,
      started,
    ),
    eval: { perRank, summary, verdict },
    timeline: timeline(events, record),
    checkpoints: checkpointSteps(events, record),
  };
  const attempts = (record as unknown as { attempts?: unknown }).attempts;
  if (Array.isArray(attempts)) data.run.attempts = attempts;
  const root = record.ranks.find((r) => r.exit?.root_cause) ?? record.ranks.find((r) => r.label === record.root_cause);
  if (root) {
    const lastLines = series.lastLines.get(root.label) ?? [];
    const classification = classifyFailure(
      lastLines.map((l) => l.replace(/^\[stderr\] /, '')),
      root.exit?.signal ?? undefined,
    );
    data.rootCause = {
      label: root.label,
      host: root.host,
      device: root.device_id,
      end: root.exit ? describeEnd(root.exit) : 'unknown',
      ...(classification ? { classification } : {}),
      lastLines,
    };
  }
  return data;
}

export interface RunFolderSnapshot {
  record: RunRecord;
  events: RunEvent[];
  series: RunSeriesReader;
  /** As `npurun summary` names them (step times, the job's progress pattern). */
  stragglers: Straggler[];
}

/** One look at a run folder: its record, events and every metric line so far. */
export async function snapshotRunFolder(runDir: string): Promise<RunFolderSnapshot> {
  const record = await readRunRecordFile(runDir);
  const series = new RunSeriesReader(runDir);
  try {
    await series.refresh();
    if (!runIsLive(record)) series.finish();
  } finally {
    await series.close();
  }
  const pattern = record.job?.progressPattern;
  const stragglers = await findStragglers(runDir, pattern !== undefined ? { progressPattern: pattern } : {});
  return { record, events: await readEvents(runDir), series, stragglers };
}

/** The report's data as of now. */
export async function reportDataOf(runDir: string): Promise<ReportData> {
  const s = await snapshotRunFolder(runDir);
  return buildReportData(s.record, s.events, s.series, new Date(), s.stragglers);
}

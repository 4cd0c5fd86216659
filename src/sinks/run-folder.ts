import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { inputError } from '../errors.js';
import type { HostSpec, JobSpec, RankSpec } from '../plan/types.js';
import type { RankTable } from '../ranktable/types.js';
import type { RankCause } from '../supervise/supervisor.js';

/**
 * The run folder `<runsDir>/<run-id>/`: run.json (this record, schema in schemas/run.schema.json),
 * rank_table.json, logs/rank-<label>.log, merged.log, events.jsonl.
 */

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'interrupted';

export interface RankExitRecord {
  code: number | null;
  signal: string | null;
  cause: RankCause;
  root_cause: boolean;
  ended_at: string;
  message?: string;
}

export interface RankRecord {
  label: string;
  rank: number;
  local_rank: number;
  node_rank: number;
  role: RankSpec['role'];
  host: string;
  address: string;
  device_id: number | null;
  cpus: number[];
  cwd: string;
  argv: string[];
  /** Secret-looking values replaced by "<redacted>". */
  env: Record<string, string>;
  /** null while the rank runs (or if npurun died before it ended). */
  exit: RankExitRecord | null;
}

export interface RunRecord {
  schema_version: 1;
  run_id: string;
  npurun_version: string;
  argv: string[];
  cwd: string;
  launcher_host: string;
  launcher_pid: number;
  /** Start time of the launcher process in clock ticks since boot (Linux), to tell a reused pid apart. */
  launcher_start_ticks: number | null;
  started_at: string;
  ended_at: string | null;
  /** "running" from the start: left as is when npurun is killed, see `launcherState`. */
  status: RunStatus;
  exit_code: number | null;
  /** For an interrupted run: who or what stopped it. */
  stopped_by?: string;
  /** Label of the rank whose failure stopped the run. */
  root_cause: string | null;
  report: string | null;
  /** Whether logs/rank-*.log lines start with their time. */
  timestamps: boolean;
  /** Where the rank table and pid files live on every host. */
  remote_dir: string;
  rank_table_path: string | null;
  world_size: number;
  master_addr: string;
  master_port: number;
  /** The hosts as npurun planned them (names, addresses, ssh settings; never keys or passphrases). */
  inventory: HostSpec[];
  job: JobSpec;
  ranks: RankRecord[];
}

export const RUN_RECORD_FILE = 'run.json';
export const MERGED_LOG_FILE = 'merged.log';
export const EVENTS_FILE = 'events.jsonl';
export const RANK_TABLE_FILE = 'rank_table.json';

export function rankLogPath(runDir: string, label: string): string {
  return join(runDir, 'logs', `rank-${label}.log`);
}

/** Readers never see a half-written file: write a temporary sibling, then rename over. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

export function writeRunRecord(runDir: string, record: RunRecord): void {
  writeFileAtomic(join(runDir, RUN_RECORD_FILE), JSON.stringify(record, null, 2) + '\n');
}

/** A copy of the run's rank table in its run folder (indented like hccl_tools.py writes it). */
export function writeRankTableCopy(runDir: string, table: RankTable): void {
  writeFileAtomic(join(runDir, RANK_TABLE_FILE), JSON.stringify(table, null, 4) + '\n');
}

/** Written into a run folder by `npurun kill` before it signals the launcher: says who stopped the run. */
export const STOP_REQUEST_FILE = 'stop-request.json';

/** Start time of a process in clock ticks since boot, from /proc (null where there is no /proc). */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/**
 * Is the npurun that wrote this record still running? "unknown" when it ran on another machine.
 * A pid counts only while its start time matches the recorded one (pids get reused).
 */
export function launcherState(record: Pick<RunRecord, 'launcher_host' | 'launcher_pid' | 'launcher_start_ticks'>): 'alive' | 'gone' | 'unknown' {
  if (record.launcher_host !== hostname()) return 'unknown';
  try {
    process.kill(record.launcher_pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 'gone';
  }
  if (record.launcher_start_ticks !== null) {
    const ticks = processStartTicks(record.launcher_pid);
    if (ticks !== null && ticks !== record.launcher_start_ticks) return 'gone';
  }
  return 'alive';
}

/** The status to show: a "running" record whose launcher is gone was never finished. */
export function displayStatus(record: RunRecord): string {
  if (record.status !== 'running') return record.status;
  switch (launcherState(record)) {
    case 'alive':
      return 'running';
    case 'gone':
      return 'unknown (launcher gone)';
    case 'unknown':
      return 'running?';
  }
}

export interface RunInfo {
  runId: string;
  dir: string;
  record: RunRecord;
  /** The run's hosts, as `npurun ps/kill` need them to connect. */
  hosts: HostSpec[];
  /** The run's remote dir with {run_id} filled in. */
  remoteDir: string;
}

function loadRun(runsDir: string, runId: string): RunInfo | undefined {
  const dir = join(runsDir, runId);
  let record: RunRecord;
  try {
    record = JSON.parse(readFileSync(join(dir, RUN_RECORD_FILE), 'utf8')) as RunRecord;
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null || typeof record.run_id !== 'string') return undefined;
  return { runId: record.run_id, dir, record, hosts: record.inventory ?? [], remoteDir: record.remote_dir };
}

/** Every run folder with a readable run.json, oldest first (by start time, then id). */
export function listRuns(runsDir: string): RunInfo[] {
  if (!existsSync(runsDir)) return [];
  const runs = readdirSync(runsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => loadRun(runsDir, d.name))
    .filter((r): r is RunInfo => r !== undefined);
  return runs.sort((a, b) => a.record.started_at.localeCompare(b.record.started_at) || a.runId.localeCompare(b.runId));
}

/**
 * The run named `runId` (its full id or a unique prefix of it), or the newest run when no id is
 * given. Unknown or ambiguous -> input error (exit 2) naming what was expected.
 */
export function readRunRecord(runsDir: string, runId?: string): RunInfo {
  if (runId !== undefined) {
    const exact = loadRun(runsDir, runId);
    if (exact) return exact;
  }
  const runs = listRuns(runsDir);
  if (runs.length === 0) throw inputError(runsDir, 'no runs here; expected run folders written by `npurun launch` (see --runs-dir)');
  if (runId === undefined) return runs[runs.length - 1] as RunInfo;
  const matches = runs.filter((r) => r.runId.startsWith(runId));
  if (matches.length === 1) return matches[0] as RunInfo;
  const known = runs.slice(-5).map((r) => r.runId).join(', ');
  if (matches.length > 1) throw inputError(runId, `matches ${matches.length} runs in ${runsDir}; expected one run id (${matches.map((r) => r.runId).join(', ')})`);
  throw inputError(runId, `no such run in ${runsDir}; expected a run id from \`npurun runs\` (newest: ${known})`);
}

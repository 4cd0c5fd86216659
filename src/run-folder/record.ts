import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { inputError } from '../errors.js';
import { schemaProblems } from '../schema.js';
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

/** One launch of the job within a run. */
export interface AttemptRecord {
  attempt: number;
  started_at: string;
  ended_at: string | null;
  /** How it ended: succeeded, interrupted, or the root cause's cause (exited, signal, lost, hang...). */
  cause: string | null;
  root_cause: string | null;
  exit_code: number | null;
  /** The checkpoint it resumed from (each saving rank's file of that step), or null. */
  resumed_from: { epoch: number; step: number; files: Record<string, string> } | null;
  /** Ranks of this attempt (smaller than the first's after a shrink). */
  world_size?: number;
  /** Lost hosts and the spares that took their places for this attempt. */
  replaced?: { host: string; by: string }[];
  /** Lost hosts this attempt goes on without (--on-host-loss shrink). */
  dropped?: string[];
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
  /** One entry per launch of the job (more than one with --max-restarts). */
  attempts?: AttemptRecord[];
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
export function launcherState(
  record: Pick<RunRecord, 'launcher_host' | 'launcher_pid' | 'launcher_start_ticks'>,
): 'alive' | 'gone' | 'unknown' {
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

/** The run.json versions this npurun reads. */
export const RUN_SCHEMA_VERSION = 1;

/** A run folder whose run.json cannot be read: listed as such, never fatal for the other runs. */
export interface UnreadableRun {
  runId: string;
  dir: string;
  reason: string;
}

/** Why a parsed run.json cannot be used, or undefined when it is a run record this npurun reads. */
export function runRecordProblem(record: unknown): string | undefined {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return 'not a JSON object';
  const version = (record as { schema_version?: unknown }).schema_version;
  if (typeof version === 'number' && version > RUN_SCHEMA_VERSION)
    return `schema_version ${version} is newer than this npurun reads (${RUN_SCHEMA_VERSION}): written by a newer npurun`;
  if (version !== RUN_SCHEMA_VERSION)
    return `schema_version ${JSON.stringify(version) ?? 'missing'}; expected ${RUN_SCHEMA_VERSION} (a run.json written by npurun launch)`;
  const problems = schemaProblems('run.schema.json', record);
  if (problems.length > 0)
    return (
      problems
        .slice(0, 3)
        .map((p) => `${p.path}: ${p.message}`)
        .join('; ') + (problems.length > 3 ? ` (and ${problems.length - 3} more)` : '')
    );
  return undefined;
}

/** A run folder's record, an unreadable one, or undefined when the folder has no run.json at all. */
function loadRun(runsDir: string, name: string): RunInfo | UnreadableRun | undefined {
  const dir = join(runsDir, name);
  const file = join(dir, RUN_RECORD_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    return {
      runId: name,
      dir,
      reason: `${file}: cannot be read (${code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message})`,
    };
  }
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch (err) {
    return { runId: name, dir, reason: `${file}: not valid JSON (${(err as Error).message})` };
  }
  const problem = runRecordProblem(record);
  if (problem) return { runId: name, dir, reason: `${file}: ${problem}` };
  const r = record as RunRecord;
  return { runId: r.run_id, dir, record: r, hosts: r.inventory, remoteDir: r.remote_dir };
}

function isReadable(r: RunInfo | UnreadableRun): r is RunInfo {
  return 'record' in r;
}

/** Every run folder (one with a run.json): readable ones oldest first (by start time, then id), and unreadable ones. */
export function listRunFolders(runsDir: string): { runs: RunInfo[]; unreadable: UnreadableRun[] } {
  if (!existsSync(runsDir)) return { runs: [], unreadable: [] };
  const all = readdirSync(runsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => loadRun(runsDir, d.name))
    .filter((r): r is RunInfo | UnreadableRun => r !== undefined);
  const runs = all
    .filter(isReadable)
    .sort((a, b) => a.record.started_at.localeCompare(b.record.started_at) || a.runId.localeCompare(b.runId));
  const unreadable = all
    .filter((r): r is UnreadableRun => !isReadable(r))
    .sort((a, b) => a.runId.localeCompare(b.runId));
  return { runs, unreadable };
}

/** Every run folder with a readable run.json, oldest first (by start time, then id). */
export function listRuns(runsDir: string): RunInfo[] {
  return listRunFolders(runsDir).runs;
}

/**
 * The run named `runId` (its full id or a unique prefix of it), or the newest run when no id is
 * given. Unknown or ambiguous -> input error (exit 2) naming what was expected.
 */
export function readRunRecord(runsDir: string, runId?: string): RunInfo {
  if (runId !== undefined && !runId.includes('/') && runId !== '..' && runId !== '.') {
    const exact = loadRun(runsDir, runId);
    if (exact && isReadable(exact)) return exact;
    if (exact) throw inputError(runId, `run folder cannot be read: ${exact.reason}`);
  }
  const { runs, unreadable } = listRunFolders(runsDir);
  if (runs.length === 0) {
    const why =
      unreadable.length > 0
        ? ` (${unreadable.length} run folder${unreadable.length === 1 ? '' : 's'} cannot be read: ${unreadable[0]?.reason})`
        : '';
    throw inputError(
      runsDir,
      `no ${why ? 'readable ' : ''}runs here${why}; expected run folders written by \`npurun launch\` (see --runs-dir)`,
    );
  }
  if (runId === undefined) return runs[runs.length - 1] as RunInfo;
  const matches = runs.filter((r) => r.runId.startsWith(runId));
  if (matches.length === 1) return matches[0] as RunInfo;
  const broken = unreadable.filter((r) => r.runId.startsWith(runId));
  if (matches.length === 0 && broken.length > 0)
    throw inputError(runId, `run folder cannot be read: ${broken[0]?.reason}`);
  const known = runs
    .slice(-5)
    .map((r) => r.runId)
    .join(', ');
  if (matches.length > 1)
    throw inputError(
      runId,
      `matches ${matches.length} runs in ${runsDir}; expected one run id (${matches.map((r) => r.runId).join(', ')})`,
    );
  throw inputError(runId, `no such run in ${runsDir}; expected a run id from \`npurun runs\` (newest: ${known})`);
}

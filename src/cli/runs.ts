import { displayStatus, listRunFolders, type RunInfo, type UnreadableRun } from '../run-folder/record.js';
import { boolFlag, runCommand, runsDirFlag, SHARED, type CommandSpec, type ParsedArgs } from './args.js';
import { EXIT } from '../errors.js';

const SPEC: CommandSpec = {
  name: 'runs',
  usage: 'npurun runs [--runs-dir DIR] [--json]',
  about: `Lists the runs in the run folder (default ./runs), oldest first, newest last: id, start time, hosts,
ranks, status, exit code, the Slurm job id (a SLURM JOB column when some run ran in an allocation) and
root-cause rank. A run whose npurun was killed stays "running" in its
run.json; it shows as "unknown (launcher gone)" here ("running?" when it was launched on another machine).
A folder whose run.json cannot be read (not JSON, a newer schema_version, fields missing) is listed
last as "unreadable", with the reason on stderr; the other runs are listed as usual.`,
  flags: { 'runs-dir': SHARED['runs-dir'], json: { ...SHARED.json, help: 'one JSON array with every run' } },
};

export interface RunListEntry {
  runId: string;
  startedAt: string;
  endedAt: string | null;
  hosts: string[];
  ranks: number;
  status: string;
  exitCode: number | null;
  rootCause: string | null;
  /** The Slurm job the run ran in (engine slurm). */
  slurmJobId?: string;
  dir: string;
  /** Why the run folder cannot be read (status "unreadable"). */
  reason?: string;
}

export function runListEntry(run: RunInfo): RunListEntry {
  const r = run.record;
  return {
    runId: run.runId,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    hosts: (r.inventory ?? []).map((h) => h.name),
    ranks: (r.ranks ?? []).length,
    status: displayStatus(r),
    exitCode: r.exit_code,
    rootCause: r.root_cause,
    ...slurmJobOf(r.inventory ?? []),
    dir: run.dir,
  };
}

function slurmJobOf(hosts: { slurm?: { jobId: string } }[]): { slurmJobId?: string } {
  const jobId = hosts.find((h) => h.slurm)?.slurm?.jobId;
  return jobId === undefined ? {} : { slurmJobId: jobId };
}

/** A run folder whose run.json cannot be read, listed (never fatal for the others). */
export function unreadableEntry(run: UnreadableRun): RunListEntry {
  return {
    runId: run.runId,
    startedAt: '',
    endedAt: null,
    hosts: [],
    ranks: 0,
    status: 'unreadable',
    exitCode: null,
    rootCause: null,
    dir: run.dir,
    reason: run.reason,
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, (args) => listRuns(args));
}

function listRuns(args: ParsedArgs): number {
  const runsDir = runsDirFlag(args);
  const folders = listRunFolders(runsDir);
  const entries = [...folders.runs.map(runListEntry), ...folders.unreadable.map(unreadableEntry)];
  if (boolFlag(args, 'json')) {
    process.stdout.write(JSON.stringify(entries, null, 2) + '\n');
    return EXIT.ok;
  }
  if (entries.length === 0) {
    process.stderr.write(`npurun: no runs in ${runsDir}\n`);
    return EXIT.ok;
  }
  // A SLURM JOB column only when some run ran in a Slurm allocation.
  const slurm = entries.some((e) => e.slurmJobId !== undefined);
  const rows = entries.map((e) => [
    e.runId,
    e.startedAt === '' ? '-' : e.startedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    e.hosts.join(','),
    String(e.ranks),
    e.status,
    e.exitCode === null ? '-' : String(e.exitCode),
    ...(slurm ? [e.slurmJobId ?? '-'] : []),
    e.rootCause === null ? '-' : `rank ${e.rootCause}`,
  ]);
  const header = ['RUN', 'STARTED', 'HOSTS', 'RANKS', 'STATUS', 'EXIT', ...(slurm ? ['SLURM JOB'] : []), 'ROOT CAUSE'];
  process.stdout.write(table([header, ...rows]) + '\n');
  for (const u of folders.unreadable)
    process.stderr.write(`npurun: run ${u.runId} is unreadable and skipped: ${u.reason}\n`);
  return EXIT.ok;
}

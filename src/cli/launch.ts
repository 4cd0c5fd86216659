import { resolve } from 'node:path';
import { inputError } from '../errors.js';
import { launch } from '../launch/launch.js';
import { expandTilde, loadJobFile, resolveJob, type JobFlags } from '../plan/job.js';
import type { ConsoleChoice } from '../run-folder/recorder.js';
import {
  boolFlag,
  intFlag,
  listFlag,
  numberFlag,
  runCommand,
  runsDirFlag,
  SHARED,
  stringFlag,
  type CommandSpec,
  type ParsedArgs,
} from './args.js';
import { inventoryOf, writableDir } from './hosts.js';
import { chooseEngine, type EngineChoice } from '../slurm/engine.js';
import { trace } from '../trace.js';

/** The allocation's nodes as hosts (no SSH options: srun reaches them), said on one line. */
async function slurmInventory(engine: EngineChoice) {
  const { jobId, hosts } = await (await import('../slurm/allocation.js')).readAllocation(process.env, '--engine');
  trace('slurm: allocation read');
  process.stderr.write(
    `npurun: engine slurm (${engine.why}): job ${jobId}, ${hosts.length} node${hosts.length === 1 ? '' : 's'} ${hosts.map((h) => h.name).join(', ')}, agents started by srun\n`,
  );
  return { hosts, spares: [], ssh: {} };
}

export const SPEC: CommandSpec = {
  name: 'launch',
  usage: 'npurun launch [options] -- <command> [args...]',
  about: `Start one process per device on every host, supervised: the first rank to fail stops all others,
Ctrl-C stops everything, and no process outlives the run on any host.`,
  flags: {
    hosts: { ...SHARED.hosts, section: 'Where' },
    engine: {
      type: 'string',
      value: 'NAME',
      help: `ssh | slurm | local: how hosts are reached (default: slurm inside an allocation,
i.e. SLURM_JOB_ID set, when no --hosts is given; else ssh with --hosts; else local).
slurm: the allocation's nodes, in Slurm's order, each agent started by srun, no SSH`,
    },
    'ssh-config': SHARED['ssh-config'],
    simulate: SHARED.simulate,
    job: {
      type: 'string',
      value: 'FILE',
      section: 'What',
      help: 'job file (YAML, see templates/); flags below override it',
    },
    profile: { type: 'string', value: 'NAME', help: 'mindspore | msrun | tensorflow | torch   (default mindspore)' },
    devices: { type: 'string', value: 'LIST', help: 'devices on every host: "[0,8)", "0-7" or "0,1,2,3"' },
    'nproc-per-node': {
      type: 'int',
      value: 'N',
      min: 1,
      max: 64,
      help: 'ranks per host (the first N devices; CPU-only hosts with --profile torch)',
    },
    env: {
      type: 'string',
      value: 'K=V',
      multiple: true,
      help: 'extra environment for every rank (repeatable; value kept byte for byte)',
    },
    'rank-table': { type: 'string', value: 'FILE', help: 'use this rank table (validated) instead of generating one' },
    name: { type: 'string', value: 'NAME', help: 'job name, part of the run id' },
    resume: {
      type: 'string',
      value: 'RUN',
      help: `start from the latest checkpoint every saving rank of RUN completed:
each rank gets NPURUN_RESUME_CKPT (its own file, else rank 0's), and the
job file's resume_arg (e.g. "--pre_trained={path}") is appended`,
    },
    workdir: {
      type: 'string',
      value: 'DIR',
      section: 'How',
      help: `base directory on every host (default: the current directory); ~ is this
machine's home, a relative DIR is relative to the current directory`,
    },
    'rank-dir': {
      type: 'string',
      value: 'PATTERN',
      help: `per-rank working dir under workdir (default train_parallel{rank});
placeholders {rank} {local_rank} {node_rank} {device} {host}`,
    },
    'bind-cores': { type: 'boolean', help: "pin each rank to its share of the host's CPUs (NUMA-aware)" },
    grace: {
      type: 'number',
      value: 'SECONDS',
      min: 0,
      max: 3600,
      help: 'SIGTERM -> SIGKILL grace when stopping ranks (default 10)',
    },
    'master-port': {
      type: 'int',
      value: 'PORT',
      min: 1,
      max: 65535,
      help: 'MASTER_PORT / MS_SCHED_PORT (default 29500; msrun 8118)',
    },
    'remote-dir': {
      type: 'string',
      value: 'DIR',
      help: `where the rank table and pid files go on each host, an absolute path
(default /tmp/npurun-{uid}/{run_id}, private to you)`,
    },
    'heartbeat-timeout': {
      type: 'number',
      value: 'S',
      min: 1,
      max: 3600,
      help: "a host's ranks stop after S seconds without the launcher (default 3)",
    },
    'max-restarts': {
      type: 'int',
      value: 'N',
      min: 0,
      max: 1000,
      help: `after a failure (a rank, a lost host, a hang) relaunch the whole job up to N
times from the newest checkpoint every saving rank completed, waiting 3 s, 6 s, ... (default 0)`,
    },
    'host-wait': {
      type: 'number',
      value: 'S',
      min: 0,
      max: 86400,
      help: 'before a restart, wait up to S seconds for hosts that are lost or not ready (default 120)',
    },
    'on-host-loss': {
      type: 'string',
      value: 'WHAT',
      help: `at a restart, a host that cannot be reached or fails preflight: wait (up to
--host-wait, then fail naming it) | spare (the first working host of the hosts file's
spares: takes its place; same world size) | shrink (go on without it, fewer ranks)
(default spare when the hosts file lists spares, else wait)`,
    },
    'hang-timeout': {
      type: 'number',
      value: 'S',
      min: 1,
      max: 86400,
      help: `no progress from any rank for S seconds is a hang: every rank's stack is
collected (Python ranks get PYTHONFAULTHANDLER=1 and SIGABRT), the run stopped, the
rank that stopped first named (exit 124); 5 x S until the first progress line; off by default`,
    },
    'progress-pattern': {
      type: 'string',
      value: 'RE',
      help: `a line matching RE is progress (default: epoch[..]/iter[..]/step lines
and {"npurun":"progress"} lines)`,
    },
    fanout: { type: 'int', value: 'N', min: 1, max: 4096, help: 'hosts connected and probed at once (default 256)' },
    'share-devices': {
      type: 'boolean',
      help: 'use devices another live npurun run of yours holds (default: refuse them)',
    },
    'dry-run': {
      type: 'boolean',
      section: 'Output',
      help: 'preflight and print the plan (per rank: host, device, CPUs, cwd, command, env)',
    },
    json: { ...SHARED.json, help: 'with --dry-run: the plan as JSON' },
    'runs-dir': { ...SHARED['runs-dir'], help: 'where run folders go (default ./runs; also --run-dir)' },
    console: {
      type: 'string',
      value: 'WHAT',
      help: `rank0 | all | collapse | none | list of ranks (e.g. 0,3) shown live (default rank0);
collapse: the same line from several ranks within 250 ms shown once as [r0-7] line; all saved`,
    },
    timestamps: { type: 'boolean', help: 'prefix saved log lines with the time' },
    dashboard: {
      type: 'boolean',
      help: "serve the run's live dashboard on 127.0.0.1 while it runs (see `npurun dashboard`)",
    },
    'dashboard-port': {
      type: 'int',
      value: 'P',
      min: 0,
      max: 65535,
      help: 'its port (default 8780; 0 = any free port)',
    },
  },
  footer: `Exit code: 0 all ranks succeeded; the root-cause rank's own code (128+N for signal N); 2 bad input;
3 a host unreachable or not ready (failing preflight). No NPUs here? Try --simulate 8.`,
};

/** Flags that set a field of the job as they are. */
const JOB_STRINGS: [keyof JobFlags, string][] = [
  ['profile', 'profile'],
  ['devices', 'devices'],
  ['rankTable', 'rank-table'],
  ['name', 'name'],
  ['workdir', 'workdir'],
  ['rankDir', 'rank-dir'],
  ['remoteDir', 'remote-dir'],
  ['progressPattern', 'progress-pattern'],
  ['onHostLoss', 'on-host-loss'],
];

export function parseConsole(value: string | undefined): ConsoleChoice {
  if (value === undefined || value === 'rank0') return 'rank0';
  if (value === 'all' || value === 'none' || value === 'collapse') return value;
  const labels = value.split(',').map((s) => s.trim());
  if (labels.some((l) => !/^(\d+|sched)$/.test(l)))
    throw inputError('--console', `"${value}" is not rank0, all, collapse, none or a list of ranks like 0,3`);
  return labels;
}

/**
 * Node decodes the command line as UTF-8 and puts U+FFFD where bytes are not: such a value (a GBK path,
 * binary) cannot reach the rank byte for byte, so it is refused instead of passed on altered.
 */
function exactValues(values: string[], where: string): string[] {
  const bad = values.find((v) => v.includes('\uFFFD'));
  if (bad !== undefined) {
    throw inputError(
      where,
      `${JSON.stringify(bad.slice(0, 80))} is not valid UTF-8 on npurun's command line, so it cannot be passed on byte for byte; expected UTF-8 (put other bytes in a file the rank reads)`,
    );
  }
  return values;
}

function jobFlags(args: ParsedArgs): JobFlags {
  const flags: JobFlags = {
    command: exactValues(args.rest, 'the command after --'),
    env: exactValues(listFlag(args, 'env'), '--env'),
    bindCores: boolFlag(args, 'bind-cores') || undefined,
  };
  for (const [key, flag] of JOB_STRINGS) {
    const v = stringFlag(args, flag);
    if (v !== undefined) (flags as unknown as Record<string, unknown>)[key] = v;
  }
  const numbers: [keyof JobFlags, number | undefined][] = [
    ['nprocPerNode', intFlag(args, 'nproc-per-node', 1, 64)],
    ['graceSeconds', numberFlag(args, 'grace', 0, 3600)],
    ['masterPort', intFlag(args, 'master-port', 1, 65535)],
    ['heartbeatTimeoutSeconds', numberFlag(args, 'heartbeat-timeout', 1, 3600)],
    ['hangTimeoutSeconds', numberFlag(args, 'hang-timeout', 1, 86400)],
    ['maxRestarts', intFlag(args, 'max-restarts', 0, 1000)],
    ['hostWaitSeconds', numberFlag(args, 'host-wait', 0, 86400)],
  ];
  for (const [key, v] of numbers) if (v !== undefined) (flags as unknown as Record<string, unknown>)[key] = v;
  return flags;
}

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, async (args) => {
    const jobFile = stringFlag(args, 'job');
    const job = resolveJob(
      jobFile ? loadJobFile(resolve(expandTilde(jobFile, '--job'))) : undefined,
      jobFlags(args),
      process.cwd(),
    );
    const simulate = intFlag(args, 'simulate', 1, 16) ?? job.simulate;
    const hostsFile = stringFlag(args, 'hosts') ?? job.hostsFile;
    const engine = chooseEngine({
      flag: stringFlag(args, 'engine'),
      job: job.engine,
      hostsFile,
      simulate,
      env: process.env,
    });
    const { hosts, spares, ssh } =
      engine.engine === 'slurm'
        ? await slurmInventory(engine)
        : await inventoryOf(hostsFile, stringFlag(args, 'ssh-config'));
    if (simulate !== undefined && hosts.some((h) => !h.local))
      throw inputError('--simulate', 'simulated NPUs are only for the local host (no --hosts)');
    const resumeRun = stringFlag(args, 'resume');
    const fanout = intFlag(args, 'fanout', 1, 4096);
    const dashboard =
      boolFlag(args, 'dashboard') && !boolFlag(args, 'dry-run')
        ? (await import('../report/dashboard.js')).dashboardOfThisLauncher({
            runsDir: runsDirFlag(args),
            port: intFlag(args, 'dashboard-port', 0, 65535) ?? 8780,
            onUrl: (url) => process.stderr.write(`npurun: dashboard at ${url}\n`),
          })
        : undefined;
    const result = await launch({
      ...(resumeRun ? { resume: { runId: resumeRun } } : {}),
      job,
      hosts,
      spares,
      ...(simulate !== undefined ? { simulate } : {}),
      dryRun: boolFlag(args, 'dry-run'),
      json: boolFlag(args, 'json'),
      runsDir: boolFlag(args, 'dry-run') ? runsDirFlag(args) : writableDir(runsDirFlag(args), '--runs-dir'),
      console: parseConsole(stringFlag(args, 'console')),
      timestamps: boolFlag(args, 'timestamps'),
      argv: ['npurun', 'launch', ...argv],
      ssh,
      orphanGraceSeconds: Math.min(job.graceSeconds, 2),
      ...(boolFlag(args, 'share-devices') ? { shareDevices: true } : {}),
      ...(fanout !== undefined ? { fanout } : {}),
    }).finally(() => dashboard?.close());
    return result.exitCode;
  });
}

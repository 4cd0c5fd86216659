import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { inputError } from '../errors.js';
import { loadInventory, localHost } from '../inventory/inventory.js';
import { launch } from '../launch/launch.js';
import { sshJumpResolver } from '../launch/jump.js';
import { loadJobFile, resolveJob, type JobFlags } from '../plan/job.js';
import type { ConsoleChoice } from '../sinks/run-recorder.js';
import { boolFlag, listFlag, numberFlag, parseCommandArgs, stringFlag } from './args.js';

export const LAUNCH_HELP = `Usage: npurun launch [options] -- <command> [args...]

Start one process per device on every host, supervised: the first rank to fail stops all others,
Ctrl-C stops everything, and no process outlives the run on any host.

Where:
  --hosts FILE            inventory: YAML (see hosts/) or "host slots=N" hostfile; default: this machine
  --ssh-config FILE       ssh_config to honour (default ~/.ssh/config)
  --simulate N            this machine reports N simulated NPUs (no Ascend hardware needed)
What:
  --job FILE              job file (YAML, see templates/); flags below override it
  --profile NAME          mindspore | msrun | tensorflow | torch   (default mindspore)
  --devices LIST          devices on every host: "[0,8)", "0-7" or "0,1,2,3"
  --nproc-per-node N      ranks per host (the first N devices; CPU-only hosts with --profile torch)
  --env K=V               extra environment for every rank (repeatable; value kept byte for byte)
  --rank-table FILE       use this rank table (validated) instead of generating one
  --name NAME             job name, part of the run id
  --resume RUN            start from the latest checkpoint every saving rank of RUN completed:
                          each rank gets NPURUN_RESUME_CKPT (its own file, else rank 0's), and the
                          job file's resume_arg (e.g. "--pre_trained={path}") is appended
How:
  --workdir DIR           base directory on every host (default: the current directory)
  --rank-dir PATTERN      per-rank working dir under workdir (default train_parallel{rank});
                          placeholders {rank} {local_rank} {node_rank} {device} {host}
  --bind-cores            pin each rank to its share of the host's CPUs (NUMA-aware)
  --grace SECONDS         SIGTERM -> SIGKILL grace when stopping ranks (default 10)
  --master-port PORT      MASTER_PORT / MS_SCHED_PORT (default 29500; msrun 8118)
  --remote-dir DIR        where the rank table and pid files go on each host (default /tmp/npurun-{uid}/{run_id}, private to you)
  --heartbeat-timeout S   a host's ranks stop after S seconds without the launcher (default 3)
  --fanout N              hosts connected and probed at once (default 256)
  --share-devices         use devices another live npurun run of yours holds (default: refuse them)
Output:
  --dry-run               preflight and print the plan (per rank: host, device, CPUs, cwd, command, env)
  --json                  with --dry-run: the plan as JSON
  --run-dir DIR           where run folders go (default ./runs)
  --console WHAT          rank0 | all | none | list of ranks (e.g. 0,3) shown live (default rank0); all saved
  --timestamps            prefix saved log lines with the time

Exit code: 0 all ranks succeeded; the root-cause rank's code (128+N for signal N); 2 bad input;
3 a host unreachable or failing preflight.`;

const OPTIONS = {
  hosts: { type: 'string' },
  'ssh-config': { type: 'string' },
  simulate: { type: 'string' },
  job: { type: 'string' },
  profile: { type: 'string' },
  devices: { type: 'string' },
  'nproc-per-node': { type: 'string' },
  env: { type: 'string', multiple: true },
  'rank-table': { type: 'string' },
  name: { type: 'string' },
  resume: { type: 'string' },
  workdir: { type: 'string' },
  'rank-dir': { type: 'string' },
  'bind-cores': { type: 'boolean' },
  grace: { type: 'string' },
  'master-port': { type: 'string' },
  'remote-dir': { type: 'string' },
  'heartbeat-timeout': { type: 'string' },
  fanout: { type: 'string' },
  'share-devices': { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  'run-dir': { type: 'string' },
  console: { type: 'string' },
  timestamps: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function parseConsole(value: string | undefined): ConsoleChoice {
  if (value === undefined || value === 'rank0') return 'rank0';
  if (value === 'all' || value === 'none') return value;
  const labels = value.split(',').map((s) => s.trim());
  if (labels.some((l) => !/^(\d+|sched)$/.test(l))) throw inputError('--console', `"${value}" is not rank0, all, none or a list of ranks like 0,3`);
  return labels;
}

export function sshConfigText(file: string | undefined): string | undefined {
  const path = file ?? join(homedir(), '.ssh', 'config');
  if (file && !existsSync(file)) throw inputError('--ssh-config', `${file} does not exist`);
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs('launch', argv, OPTIONS, false);
  if (boolFlag(args, 'help')) {
    process.stdout.write(LAUNCH_HELP + '\n');
    return 0;
  }
  const cwd = process.cwd();
  const jobFile = stringFlag(args, 'job');
  const fromFile = jobFile ? loadJobFile(resolve(jobFile)) : undefined;
  const flags: JobFlags = {
    command: args.rest,
    env: listFlag(args, 'env'),
    bindCores: boolFlag(args, 'bind-cores') || undefined,
  };
  const str: [keyof JobFlags, string][] = [
    ['profile', 'profile'], ['devices', 'devices'], ['rankTable', 'rank-table'], ['name', 'name'],
    ['workdir', 'workdir'], ['rankDir', 'rank-dir'], ['remoteDir', 'remote-dir'],
  ];
  for (const [key, flag] of str) {
    const v = stringFlag(args, flag);
    if (v !== undefined) (flags as unknown as Record<string, unknown>)[key] = v;
  }
  const nproc = numberFlag(args, 'nproc-per-node', 1, 64);
  if (nproc !== undefined) flags.nprocPerNode = nproc;
  const grace = numberFlag(args, 'grace', 0, 3600);
  if (grace !== undefined) flags.graceSeconds = grace;
  const port = numberFlag(args, 'master-port', 1, 65535);
  if (port !== undefined) flags.masterPort = port;
  const hb = numberFlag(args, 'heartbeat-timeout', 1, 3600);
  if (hb !== undefined) flags.heartbeatTimeoutSeconds = hb;
  const job = resolveJob(fromFile, flags, cwd);

  const simulate = numberFlag(args, 'simulate', 1, 16) ?? job.simulate;
  const hostsFile = stringFlag(args, 'hosts') ?? job.hostsFile;
  const configText = sshConfigText(stringFlag(args, 'ssh-config'));
  const onWarning = (m: string) => process.stderr.write(`npurun: warning: ${m}\n`);
  const hosts = hostsFile ? loadInventory(resolve(hostsFile), { ...(configText !== undefined ? { sshConfigText: configText } : {}), onWarning }) : [localHost()];
  if (simulate !== undefined && hosts.some((h) => !h.local)) throw inputError('--simulate', 'simulated NPUs are only for the local host (no --hosts)');

  const resumeRun = stringFlag(args, 'resume');
  const resume = resumeRun ? { runId: resumeRun } : undefined;
  const result = await launch({
    ...(resume ? { resume } : {}),
    job,
    hosts,
    ...(simulate !== undefined ? { simulate } : {}),
    dryRun: boolFlag(args, 'dry-run'),
    json: boolFlag(args, 'json'),
    runsDir: resolve(stringFlag(args, 'run-dir') ?? 'runs'),
    console: parseConsole(stringFlag(args, 'console')),
    timestamps: boolFlag(args, 'timestamps'),
    argv: ['npurun', 'launch', ...argv],
    ssh: { resolveJump: sshJumpResolver(configText) },
    orphanGraceSeconds: Math.min(job.graceSeconds, 2),
    ...(boolFlag(args, 'share-devices') ? { shareDevices: true } : {}),
    ...(numberFlag(args, 'fanout', 1, 4096) !== undefined ? { fanout: numberFlag(args, 'fanout', 1, 4096) as number } : {}),
  });
  return result.exitCode;
}

import { withHosts } from '../launch/hosts.js';
import type { SshOptions } from '../transport/ssh.js';
import type { HostSpec } from '../plan/types.js';
import { listLeftovers, killLeftovers } from '../supervise/leftovers.js';
import { readRunRecord, type RunInfo } from '../run-folder/record.js';
import { stopLauncher } from '../supervise/stop-run.js';
import { EXIT, inputError, NpurunError } from '../errors.js';
import {
  boolFlag,
  numberFlag,
  runCommand,
  runsDirFlag,
  SHARED,
  stringFlag,
  type CommandSpec,
  type Flags,
  type ParsedArgs,
} from './args.js';
import { inventoryOf } from './hosts.js';

const FLAGS: Flags = {
  hosts: { ...SHARED.hosts, help: "these hosts (default: the run's own hosts from its run folder, else this machine)" },
  'ssh-config': SHARED['ssh-config'],
  'runs-dir': SHARED['runs-dir'],
  'remote-dir': {
    type: 'string',
    value: 'DIR',
    help: "where the run's pid files are on each host (default: the run's own)",
  },
  json: { ...SHARED.json, help: 'what was found (and stopped), per host, as JSON' },
};

const PS: CommandSpec = {
  name: 'ps',
  usage: 'npurun ps [RUN] [--hosts FILE] [--runs-dir DIR] [--remote-dir DIR] [--json]',
  about: `Lists processes that npurun runs left on hosts, found through the pid files their agents recorded and
the tag their ranks carry (never by process name; only pid files you own are trusted). With RUN, the
hosts of that run (from its run folder); with --hosts, those hosts; otherwise this machine.`,
  flags: FLAGS,
  positionals: true,
};

const KILL: CommandSpec = {
  name: 'kill',
  usage: 'npurun kill RUN [--hosts FILE] [--runs-dir DIR] [--grace SECONDS] [--json]',
  about: `Stops RUN. While its launcher lives on this machine, the launcher is asked to stop the run (as
Ctrl-C would, and run.json records \`stopped_by: npurun kill\`); then every host of the run is
checked and whatever is left is stopped: SIGTERM to each rank's process group and every process
that escaped it, SIGKILL after the grace period. Processes are found by recorded pid, start time and
tag only, so other jobs on the same hosts are never touched.`,
  flags: {
    ...FLAGS,
    grace: { type: 'number', value: 'SECONDS', min: 0, max: 600, help: 'SIGTERM -> SIGKILL grace (default 5)' },
  },
  positionals: true,
};

interface Target {
  hosts: HostSpec[];
  ssh: SshOptions;
  remoteDir: string;
  runId?: string;
  info?: RunInfo;
}

async function targetOf(
  command: string,
  runId: string | undefined,
  hostsFile: string | undefined,
  runsDir: string,
  remoteDirFlag: string | undefined,
  sshConfigFlag: string | undefined,
): Promise<Target> {
  const record = runId ? readRunRecord(runsDir, runId) : undefined;
  if (command === 'kill' && !record) throw inputError('npurun kill', 'which run? give its id (see `npurun runs`)');
  const { hosts, ssh } = await inventoryOf(hostsFile, sshConfigFlag);
  if (record)
    return {
      hosts: hostsFile ? hosts : record.hosts,
      ssh,
      remoteDir: remoteDirFlag ?? record.remoteDir,
      runId: record.runId,
      info: record,
    };
  return { hosts, ssh, remoteDir: remoteDirFlag ?? '/tmp/npurun-{uid}/{run_id}' };
}

async function psOrKill(command: 'ps' | 'kill', args: ParsedArgs): Promise<number> {
  if (args.positionals.length > 1)
    throw inputError(`npurun ${command}`, `one run id expected, got ${args.positionals.length}`);
  const target = await targetOf(
    command,
    args.positionals[0],
    stringFlag(args, 'hosts'),
    runsDirFlag(args),
    stringFlag(args, 'remote-dir'),
    stringFlag(args, 'ssh-config'),
  );
  const grace = numberFlag(args, 'grace', 0, 600) ?? 5;
  // A live launcher on this machine stops its own run (recorded as stopped by this kill); then the
  // hosts are checked, and whatever is left (a launcher that was SIGKILLed) is stopped from here.
  if (
    command === 'kill' &&
    target.info &&
    (await stopLauncher(target.info, target.info.record.job.graceSeconds + 15)) === 'stopped'
  ) {
    process.stderr.write(
      `npurun: asked the launcher of ${target.runId} (pid ${target.info.record.launcher_pid}) to stop the run\n`,
    );
  }
  const done = await withHosts(target.hosts, { ssh: target.ssh }, (t) =>
    command === 'kill'
      ? killLeftovers(t, target.remoteDir, target.runId as string, grace)
      : listLeftovers(t, target.remoteDir, target.runId),
  );
  const results = done.map((r) => ({
    host: r.host.name,
    ranks: r.value ?? [],
    ...(r.error ? { error: r.error.message } : {}),
  }));
  if (boolFlag(args, 'json')) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  } else {
    for (const r of results) {
      if (r.error) {
        process.stdout.write(`${r.host}: unreachable: ${r.error}\n`);
        continue;
      }
      const live = r.ranks.filter((x) => x.alive);
      if (live.length === 0)
        process.stdout.write(`${r.host}: nothing left${target.runId ? ` by ${target.runId}` : ''}\n`);
      for (const x of live) {
        const state = command === 'kill' ? (x.killed ? 'killed' : 'STILL RUNNING') : 'running';
        process.stdout.write(
          `${r.host}: run ${x.runId} rank ${x.label} pid ${x.pid}: ${state} (${x.members.length} process${x.members.length === 1 ? '' : 'es'})\n`,
        );
        if (command === 'ps') for (const m of x.members) process.stdout.write(`    ${m.pid} ${m.cmdline}\n`);
      }
    }
  }
  const unreachable = results.filter((r) => r.error).length;
  if (command === 'kill' && results.some((r) => r.ranks.some((x) => x.alive && !x.killed))) {
    throw new NpurunError('runtime', 'some processes could not be stopped (see above)');
  }
  return unreachable > 0 ? EXIT.host : EXIT.ok;
}

export function run(argv: string[]): Promise<number> {
  return runCommand(PS, argv, (args) => psOrKill('ps', args));
}

export function runKill(argv: string[]): Promise<number> {
  return runCommand(KILL, argv, (args) => psOrKill('kill', args));
}

import { EXIT, fileErrorWords, isFileError, isNpurunError } from '../errors.js';
import { VERSION } from '../version.js';
import { trace } from '../trace.js';

/** A command module: parses its own arguments and calls the library. Returns the exit code. */
export interface CommandModule {
  run(argv: string[]): Promise<number>;
}

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandModule>;
}

const COMMANDS: Record<string, CommandEntry> = {
  devices: {
    summary: 'detect NPUs and their HCCL NIC addresses on this host (or every host of --hosts)',
    load: () => import('./devices.js'),
  },
  ranktable: {
    summary: 'generate | merge | validate | show HCCL rank-table JSON',
    load: () => import('./ranktable.js'),
  },
  launch: { summary: 'start one process per device on every host, supervised', load: () => import('./launch.js') },
  submit: {
    summary: 'submit a job file to Slurm: an sbatch script running npurun launch in the allocation',
    load: () => import('./submit.js'),
  },
  ps: { summary: 'list processes that npurun runs left on hosts', load: () => import('./ps.js') },
  kill: {
    summary: 'stop every process of a run on every host, by recorded pids',
    load: () => import('./ps.js').then((m) => ({ run: m.runKill })),
  },
  logs: { summary: 'print or follow the logs of a run', load: () => import('./logs.js') },
  runs: { summary: 'list runs in the run folder', load: () => import('./runs.js') },
  summary: {
    summary: 'training and evaluation totals of a run, reduced across ranks and cross-checked',
    load: () => import('./summary.js'),
  },
  ckpt: {
    summary: 'list checkpoints of a run, or the latest step every saving rank completed',
    load: () => import('./ckpt.js'),
  },
  dashboard: {
    summary: "serve a run's report page on localhost, updating live while the run goes",
    load: () => import('./dashboard.js'),
  },
  report: {
    summary: 'one self-contained HTML page of a run: ranks, loss, throughput, eval, timeline, root cause',
    load: () => import('./report.js'),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'npurun: distributed training on Huawei Ascend NPU servers',
    '',
    'Usage: npurun <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `npurun <command> --help` for the options of a command.',
  ].join('\n');
}

/**
 * `npurun ... | head -1` closes the pipe early: that is the reader's choice, not an error, and the
 * command ends quietly. A launch goes on (its ranks are not the reader's to stop): what it would
 * have shown is in the run folder.
 */
function quietOnClosedPipe(command: string | undefined): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    if (command !== 'launch') process.exit(EXIT.ok);
  });
}

export async function main(argv: string[]): Promise<number> {
  trace('main');
  const [name, ...rest] = argv;
  quietOnClosedPipe(name);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? EXIT.input : EXIT.ok;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`npurun ${VERSION}\n`);
    return EXIT.ok;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`npurun: unknown command "${name}"; expected one of: ${Object.keys(COMMANDS).join(', ')}\n`);
    return EXIT.input;
  }
  // A launch without hosts runs its ranks here: its agent can start while the command loads.
  if (name === 'launch' && !rest.some((a) => /^(--hosts|--dry-run|--help|-h|--engine)(=|$)/.test(a))) {
    const { startLocalAgentEarly } = await import('../transport/local.js');
    startLocalAgentEarly();
  }
  try {
    const mod = await entry.load();
    return await mod.run(rest);
  } catch (err) {
    return reportError(err);
  }
}

/** Prints an error the way every command does: one line, then details and a hint; returns its exit code. */
export function reportError(err: unknown): number {
  if (isNpurunError(err)) {
    const out = [`npurun: ${err.message}`, ...err.details.map((d) => `  ${d}`)];
    if (err.hint) out.push(`hint: ${err.hint}`);
    process.stderr.write(out.join('\n') + '\n');
    return err.exitCode;
  }
  const e = err as { code?: string; message?: string };
  if (
    e &&
    (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
      e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
      e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
  ) {
    process.stderr.write(`npurun: ${e.message}\n`);
    return EXIT.input;
  }
  // A file npurun was told to read or write (a flag, a job file's field) that the system refused.
  if (isFileError(err) && err.path !== undefined) {
    process.stderr.write(`npurun: ${err.path}: ${fileErrorWords(err)}\n`);
    return EXIT.input;
  }
  process.stderr.write(`npurun: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT.internal;
}

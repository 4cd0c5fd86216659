import { isNpurunError } from '../errors.js';
import { VERSION } from '../version.js';

/** A command module: parses its own arguments and calls the library. Returns the exit code. */
export interface CommandModule {
  run(argv: string[]): Promise<number>;
}

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandModule>;
}

const COMMANDS: Record<string, CommandEntry> = {
  devices: { summary: 'detect NPUs and their HCCL NIC addresses on this host (or every host of --hosts)', load: () => import('./devices.js') },
  ranktable: { summary: 'generate | merge | validate | show HCCL rank-table JSON', load: () => import('./ranktable.js') },
  launch: { summary: 'start one process per device on every host, supervised', load: () => import('./launch.js') },
  ps: { summary: 'list processes that npurun runs left on hosts', load: () => import('./ps.js') },
  kill: { summary: 'stop every process of a run on every host, by recorded pids', load: () => import('./kill.js') },
  logs: { summary: 'print or follow the logs of a run', load: () => import('./logs.js') },
  runs: { summary: 'list runs in the run folder', load: () => import('./runs.js') },
  summary: { summary: 'training and evaluation totals of a run, reduced across ranks and cross-checked', load: () => import('./summary.js') },
  ckpt: { summary: 'list checkpoints of a run, or the latest step every saving rank completed', load: () => import('./ckpt.js') },
  dashboard: { summary: 'serve a run\'s report page on localhost, updating live while the run goes', load: () => import('./dashboard.js') },
  report: { summary: 'one self-contained HTML page of a run: ranks, loss, throughput, eval, timeline, root cause', load: () => import('./report.js') },
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

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`npurun ${VERSION}\n`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`npurun: unknown command "${name}"; expected one of: ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
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
  if (e && (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')) {
    process.stderr.write(`npurun: ${e.message}\n`);
    return 2;
  }
  process.stderr.write(`npurun: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 70;
}

import { inputError } from '../errors.js';
import { startDashboard } from '../report/dashboard.js';
import { locateRunDir } from '../report/locate.js';
import { boolFlag, numberFlag, parseCommandArgs, RUNS_DIR_OPTIONS, runsDirFlag, stringFlag } from './args.js';

const HELP = `Usage: npurun dashboard [RUN] [--port P] [--host H] [--runs-dir DIR]

Serves the report page of a run (the newest by default; RUN is a run id, a unique prefix of one, or
a run folder's path) and updates it live while the run goes: it reads the run folder, so it follows
a run started by any npurun process, and keeps serving after the run ended. Ctrl-C stops it.

  --port P         port to listen on (default 8780; 0 = any free port)
  --host H         address to listen on (default 127.0.0.1). Anything else lets whoever reaches
                   this machine read every rank's output: a warning is printed
  --runs-dir DIR   where run folders are (default ./runs; also --run-dir)`;

const OPTIONS = { ...RUNS_DIR_OPTIONS, port: { type: 'string' }, host: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs('dashboard', argv, OPTIONS);
  if (boolFlag(args, 'help')) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (args.positionals.length > 1) throw inputError('npurun dashboard', `one run expected, got ${args.positionals.length}: ${args.positionals.join(' ')}`);
  const port = numberFlag(args, 'port', 0, 65535) ?? 8780;
  if (!Number.isInteger(port)) throw inputError('--port', `"${port}" is not a whole number from 0 to 65535`);
  const runDir = locateRunDir(runsDirFlag(args), args.positionals[0]);
  let dashboard;
  try {
    dashboard = await startDashboard({ runDir, port, host: stringFlag(args, 'host') ?? '127.0.0.1' });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') throw inputError('--port', `port ${port} is in use; choose another (--port 0 picks a free one)`);
    if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') throw inputError('--host', `cannot listen on ${stringFlag(args, 'host')}: ${e.message}`);
    throw err;
  }
  process.stdout.write(`npurun: dashboard of ${runDir} at ${dashboard.url} (Ctrl-C stops it)\n`);
  const open = dashboard;
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await open.close();
  return 0;
}

import { EXIT, inputError } from '../errors.js';
import { startDashboard, type Dashboard } from '../report/dashboard.js';
import { locateRunDir } from '../report/locate.js';
import { intFlag, runCommand, runsDirFlag, SHARED, stringFlag, type CommandSpec } from './args.js';

const SPEC: CommandSpec = {
  name: 'dashboard',
  usage: 'npurun dashboard [RUN] [--port P] [--host H] [--runs-dir DIR]',
  about: `Serves the report page of a run (the newest by default; RUN is a run id, a unique prefix of one, or
a run folder's path) and updates it live while the run goes: it reads the run folder, so it follows
a run started by any npurun process, and keeps serving after the run ended. Ctrl-C stops it.`,
  positionals: true,
  flags: {
    port: { type: 'int', value: 'P', min: 0, max: 65535, help: 'port to listen on (default 8780; 0 = any free port)' },
    host: {
      type: 'string',
      value: 'H',
      help: "address to listen on (default 127.0.0.1); anything else lets whoever\nreaches this machine read every rank's output: a warning is printed",
    },
    'runs-dir': SHARED['runs-dir'],
  },
};

export async function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, async (args) => {
    if (args.positionals.length > 1)
      throw inputError(
        'npurun dashboard',
        `one run expected, got ${args.positionals.length}: ${args.positionals.join(' ')}`,
      );
    const port = intFlag(args, 'port', 0, 65535) ?? 8780;
    const host = stringFlag(args, 'host') ?? '127.0.0.1';
    const runDir = locateRunDir(runsDirFlag(args), args.positionals[0]);
    let dashboard: Dashboard;
    try {
      dashboard = await startDashboard({ runDir, port, host });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE')
        throw inputError('--port', `port ${port} is in use; choose another (--port 0 picks a free one)`);
      if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN')
        throw inputError('--host', `cannot listen on ${host}: ${e.message}`);
      throw err;
    }
    process.stdout.write(`npurun: dashboard of ${runDir} at ${dashboard.url} (Ctrl-C stops it)\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await dashboard.close();
    return EXIT.ok;
  });
}

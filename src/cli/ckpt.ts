import { scanRun } from '../checkpoints/scan.js';
import { EXIT, inputError } from '../errors.js';
import { connectHost } from '../launch/hosts.js';
import { readRunRecord } from '../run-folder/record.js';
import { boolFlag, runCommand, runsDirFlag, SHARED, stringFlag, type CommandSpec, type ParsedArgs } from './args.js';
import { helpText } from './help.js';
import { inventoryOf } from './hosts.js';

const SPEC: CommandSpec = {
  name: 'ckpt',
  usage: 'npurun ckpt list|latest [RUN] [--runs-dir DIR] [--json]',
  about: `Only the files RUN wrote count (recorded in its run folder's checkpoints.jsonl); other files in the
same folders (an earlier run's, a pretrained model) are counted as foreign and never offered.
list:   every checkpoint RUN wrote, per saving rank and step, read from the hosts through their agents,
        each marked complete, PARTIAL or being written.
latest: the newest step that every saving rank completed: a step where one rank's file is missing,
        still being written, or short (a save cut off by a crash) does not count. Exit 1 if none.
        \`npurun launch --resume RUN\` starts from it.`,
  flags: {
    'runs-dir': SHARED['runs-dir'],
    'ssh-config': SHARED['ssh-config'],
    json: { ...SHARED.json, help: 'what was found, as JSON' },
  },
  positionals: true,
};

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, (args) => checkpoints(args));
}

async function checkpoints(args: ParsedArgs): Promise<number> {
  const [sub, runId, ...extra] = args.positionals;
  if (sub === undefined) {
    process.stdout.write(helpText(SPEC) + '\n');
    return EXIT.input;
  }
  if (sub !== 'list' && sub !== 'latest')
    throw inputError('npurun ckpt', `unknown subcommand "${sub}"; expected list or latest`);
  if (extra.length > 0) throw inputError(`npurun ckpt ${sub}`, `one run id expected, got ${extra.length + 1}`);
  const info = readRunRecord(runsDirFlag(args), runId);
  const { ssh } = await inventoryOf(undefined, stringFlag(args, 'ssh-config'));
  const scan = await scanRun(info, { connect: (h) => connectHost(h, ssh) });
  const json = boolFlag(args, 'json');
  if (sub === 'latest') {
    if (json) process.stdout.write(JSON.stringify({ run_id: info.runId, latest: scan.latest ?? null }, null, 2) + '\n');
    else if (scan.latest) {
      process.stdout.write(
        `run ${info.runId}: latest complete checkpoint: epoch ${scan.latest.epoch}, step ${scan.latest.step}\n`,
      );
      for (const r of scan.ranks)
        if (scan.latest.files[r.label])
          process.stdout.write(`  rank ${r.label} (${r.host}): ${r.dir}/${scan.latest.files[r.label]}\n`);
    } else process.stdout.write(`run ${info.runId}: no step was completed by every saving rank\n`);
    return scan.latest ? EXIT.ok : EXIT.problems;
  }
  if (json) {
    process.stdout.write(JSON.stringify({ run_id: info.runId, ...scan }, null, 2) + '\n');
    return EXIT.ok;
  }
  for (const r of scan.ranks) {
    const notes = [
      r.error,
      r.foreign > 0 ? `${r.foreign} file${r.foreign === 1 ? '' : 's'} not written by this run, left alone` : undefined,
      r.replaced.length > 0 ? `replaced since by another run: ${r.replaced.join(', ')}` : undefined,
    ].filter(Boolean);
    process.stdout.write(`rank ${r.label} (${r.host}) ${r.dir}${notes.length > 0 ? `: ${notes.join('; ')}` : ''}\n`);
    for (const f of r.files)
      process.stdout.write(
        `  epoch ${String(f.epoch).padStart(4)}  step ${String(f.step).padStart(8)}  ${String(f.size).padStart(12)} B  ${f.complete ? 'complete' : f.stable ? 'PARTIAL' : 'being written'}  ${f.name}\n`,
      );
  }
  process.stdout.write(
    scan.latest
      ? `latest complete: epoch ${scan.latest.epoch}, step ${scan.latest.step}\n`
      : 'no step completed by every saving rank\n',
  );
  return EXIT.ok;
}

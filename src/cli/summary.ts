import { readRunRecord } from '../run-folder/record.js';
import { hasContent, summarizeRunFolder, summaryJson, writeSummary } from '../summary/run-summary.js';
import { findStragglers, renderStragglers } from '../summary/stragglers.js';
import { renderSummary } from '../summary/summary.js';
import { EXIT, inputError } from '../errors.js';
import { boolFlag, runCommand, runsDirFlag, SHARED, type CommandSpec, type ParsedArgs } from './args.js';

const SPEC: CommandSpec = {
  name: 'summary',
  usage: 'npurun summary [RUN] [--runs-dir DIR] [--json]',
  about: `Training and evaluation numbers of a run (the latest by default), read from every rank's output:
a per-rank table (last epoch, iter, loss, fps; eval counts), totals reduced across ranks (accuracy
from summed counts, total throughput), and cross-checks: a NaN or infinite loss or metric on any
rank (the run diverged); ranks whose in-script allreduce results disagree, or disagree with the sum
of the per-rank counts; an eval total above the dataset size (job file eval.dataset_size, or a
dataset_size metric line: a padded sampler). Lines missing on some ranks (a rank-0-only print) are
notes; malformed metric lines are warnings naming rank and line. Stragglers: ranks whose median step
time over their last 50 steps is 1.3x the run's or more (from "per step time: N ms" lines, step_time
metric lines, or the arrival of progress lines), named with host and device. Written to summary.json
in the run folder (NaN and infinities as the strings "NaN", "Infinity"). Exit code 1 when a check fails.`,
  flags: { 'runs-dir': SHARED['runs-dir'], json: { ...SHARED.json, help: 'the summary as JSON (with stragglers)' } },
  positionals: true,
};

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, (args) => summarize(args));
}

async function summarize(args: ParsedArgs): Promise<number> {
  if (args.positionals.length > 1)
    throw inputError('npurun summary', `one run id expected, got ${args.positionals.length}`);
  const info = readRunRecord(runsDirFlag(args), args.positionals[0]);
  const summary = await summarizeRunFolder(info.dir, info.record);
  writeSummary(info.dir, summary);
  const stragglers = await findStragglers(
    info.dir,
    info.record.job?.progressPattern !== undefined ? { progressPattern: info.record.job.progressPattern } : {},
  );
  if (boolFlag(args, 'json'))
    process.stdout.write(
      JSON.stringify({ ...(JSON.parse(summaryJson(summary)) as object), stragglers }, null, 2) + '\n',
    );
  else {
    process.stdout.write(
      `run ${info.runId}\n${hasContent(summary) ? renderSummary(summary) : 'no training or evaluation lines recognised in the output'}\n`,
    );
    for (const line of renderStragglers(stragglers)) process.stdout.write(line + '\n');
  }
  return summary.problems.length > 0 ? EXIT.problems : EXIT.ok;
}

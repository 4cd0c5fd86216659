import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EXIT, inputError } from '../errors.js';
import { locateRunDir } from '../report/locate.js';
import { writeMetricsFiles } from '../report/metrics-file.js';
import { buildReportData, snapshotRunFolder } from '../report/model.js';
import { renderReportHtml } from '../report/page.js';
import { boolFlag, runCommand, runsDirFlag, SHARED, stringFlag, type CommandSpec } from './args.js';

const SPEC: CommandSpec = {
  name: 'report',
  usage: 'npurun report [RUN] [--runs-dir DIR] [--out FILE] [--csv]',
  about: `Writes one self-contained HTML file about a run (the newest by default; RUN is a run id, a unique
prefix of one, or a run folder's path): header, rank x host grid coloured by state, loss and
throughput per rank (median highlighted, outliers named), total throughput, evaluation results with
the allreduce cross-check, a timeline of events, and the root cause with its last lines. Scripts,
styles and data are inline: it opens without a network. Works during a run and after its launcher
was killed. Also writes the parsed metrics to the run folder as metrics.jsonl
(schemas/metrics.schema.json).`,
  positionals: true,
  flags: {
    'runs-dir': SHARED['runs-dir'],
    out: { type: 'string', value: 'FILE', help: 'where to write the page (default <run folder>/report.html)' },
    csv: { type: 'boolean', help: 'also write metrics.csv (same rows as metrics.jsonl) to the run folder' },
  },
};

export async function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, async (args) => {
    if (args.positionals.length > 1)
      throw inputError(
        'npurun report',
        `one run expected, got ${args.positionals.length}: ${args.positionals.join(' ')}`,
      );
    const runDir = locateRunDir(runsDirFlag(args), args.positionals[0]);
    const snapshot = await snapshotRunFolder(runDir);
    const out = resolve(stringFlag(args, 'out') ?? join(runDir, 'report.html'));
    try {
      writeFileSync(
        out,
        renderReportHtml(
          buildReportData(snapshot.record, snapshot.events, snapshot.series, new Date(), snapshot.stragglers),
        ),
      );
    } catch (err) {
      throw inputError('--out', `cannot write ${out}: ${(err as Error).message}`);
    }
    const metrics = writeMetricsFiles(runDir, snapshot.series.rows, { csv: boolFlag(args, 'csv') });
    process.stdout.write(`${out}\n${metrics.join('\n')}\n`);
    return EXIT.ok;
  });
}

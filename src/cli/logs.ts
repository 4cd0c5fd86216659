import { once } from 'node:events';
import { EXIT, inputError } from '../errors.js';
import { mergedPrefix, type MergedLine } from '../run-folder/log-format.js';
import { Collapser } from '../run-folder/collapse.js';
import { readRunLog, type LogFilter } from '../run-folder/log-reader.js';
import { readRunRecord, type RunInfo } from '../run-folder/record.js';
import { boolFlag, intFlag, listFlag, runCommand, runsDirFlag, SHARED, stringFlag, type CommandSpec } from './args.js';

export const SPEC: CommandSpec = {
  name: 'logs',
  usage: 'npurun logs [RUN] [options]',
  about: `Prints the lines of a run (merged.log: every rank, in arrival order), the newest run by default.
RUN is a run id from \`npurun runs\` or a unique prefix of one.`,
  flags: {
    'runs-dir': SHARED['runs-dir'],
    rank: {
      type: 'string',
      value: 'L[,L]',
      multiple: true,
      help: 'only these ranks (labels as in the prefixes: 0, 1, ..., sched); repeatable',
    },
    host: { type: 'string', value: 'H', help: 'only ranks on host H' },
    grep: { type: 'string', value: 'REGEX', help: 'only lines whose text matches (JavaScript regular expression)' },
    tail: { type: 'int', value: 'N', help: 'only the last N matching lines (with --follow: then everything new)' },
    since: { type: 'string', value: 'WHEN', help: 'only lines since a duration ago (30s, 10m, 2h, 1d) or an ISO time' },
    follow: {
      type: 'boolean',
      short: 'f',
      help: 'keep printing new lines until the run finishes (or its npurun is gone)',
    },
    json: { ...SHARED.json, help: 'one JSON object per line: {time, label, host, device, stream, line}' },
    raw: { type: 'boolean', help: "the ranks' text only, without npurun's prefix" },
    attempt: {
      type: 'int',
      value: 'K',
      min: 1,
      help: 'only lines of attempt K (a run restarted with --max-restarts has several)',
    },
    collapse: { type: 'boolean', help: 'the same line from several ranks within 250 ms printed once, as [r0-7] line' },
  },
  positionals: true,
  footer: 'Each line: <ISO time> [<label> <host> dev<id>] text, with " stderr" inside the brackets for stderr.',
};

const DURATION = /^(\d+(?:\.\d+)?)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: "10m" (ago) or an ISO time, as an ISO time. */
export function parseSince(value: string, now: Date = new Date()): string {
  const m = DURATION.exec(value.trim());
  if (m) return new Date(now.getTime() - Number(m[1]) * (UNIT_MS[m[2] as string] as number)).toISOString();
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(t)) {
    throw inputError(
      '--since',
      `"${value}" is not a duration (30s, 10m, 2h, 1d) or an ISO time (2025-05-01T10:00:00Z)`,
    );
  }
  return new Date(t).toISOString();
}

function filterOf(
  values: { rank: string[]; host: string | undefined; grep: string | undefined; since: string | undefined },
  run: RunInfo,
): LogFilter {
  const filter: LogFilter = {};
  if (values.rank.length > 0) {
    const labels = values.rank
      .flatMap((v) => v.split(','))
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const known = run.record.ranks.map((r) => r.label);
    const unknown = labels.filter((l) => !known.includes(l));
    if (unknown.length > 0)
      throw inputError(
        '--rank',
        `no rank ${unknown.join(', ')} in run ${run.runId}; expected labels among ${known.join(', ')}`,
      );
    filter.labels = labels;
  }
  if (values.host !== undefined) {
    const known = [...new Set(run.record.ranks.map((r) => r.host))];
    if (!known.includes(values.host))
      throw inputError('--host', `no host "${values.host}" in run ${run.runId}; expected one of ${known.join(', ')}`);
    filter.host = values.host;
  }
  if (values.grep !== undefined) {
    try {
      filter.grep = new RegExp(values.grep);
    } catch (err) {
      throw inputError('--grep', `"${values.grep}" is not a regular expression: ${(err as Error).message}`);
    }
  }
  if (values.since !== undefined) filter.since = parseSince(values.since);
  return filter;
}

type Format = 'text' | 'json' | 'raw';

function format(line: MergedLine, how: Format): string {
  if (how === 'json') return JSON.stringify(line);
  if (how === 'raw') return line.line;
  return `${line.time} ${mergedPrefix({ label: line.label, host: line.host, deviceId: line.device }, line.stream)}${line.line}`;
}

async function print(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, async (args) => {
    if (args.positionals.length > 1)
      throw inputError(
        'npurun logs',
        `one run id expected, got ${args.positionals.length}: ${args.positionals.join(' ')}`,
      );
    if (boolFlag(args, 'json') && boolFlag(args, 'raw'))
      throw inputError('npurun logs', '--json and --raw exclude each other; expected one of them');
    const tail = intFlag(args, 'tail', 0, Number.MAX_SAFE_INTEGER);
    const runInfo = readRunRecord(runsDirFlag(args), args.positionals[0]);
    const filter = filterOf(
      {
        rank: listFlag(args, 'rank'),
        host: stringFlag(args, 'host'),
        grep: stringFlag(args, 'grep'),
        since: stringFlag(args, 'since'),
      },
      runInfo,
    );
    const attempt = intFlag(args, 'attempt', 1, 1_000_000);
    if (attempt !== undefined) {
      const attempts = runInfo.record.attempts ?? [];
      const a = attempts[attempt - 1];
      if (!a)
        throw inputError(
          '--attempt',
          `run ${runInfo.runId} has ${attempts.length || 'no recorded'} attempt${attempts.length === 1 ? '' : 's'}; expected 1${attempts.length > 1 ? `-${attempts.length}` : ''}`,
        );
      // An attempt's lines are those that arrived between its start and the next one's.
      if (filter.since === undefined || filter.since < a.started_at) filter.since = a.started_at;
      const next = attempts[attempt];
      if (next) filter.until = next.started_at;
    }
    const how: Format = boolFlag(args, 'json') ? 'json' : boolFlag(args, 'raw') ? 'raw' : 'text';
    if (boolFlag(args, 'collapse') && how === 'json')
      throw inputError('npurun logs', '--collapse folds lines for reading; expected it without --json');
    // Folded by the times the lines arrived (merged.log's own), so the result is the same later as live.
    const collapser = boolFlag(args, 'collapse') ? new Collapser() : undefined;
    const show = (lines: MergedLine[]) =>
      collapser
        ? lines.flatMap((l) =>
            collapser.push(/^\d+$/.test(l.label) ? Number(l.label) : l.label, l.line, Date.parse(l.time)),
          )
        : lines.map((l) => format(l, how));
    const end = await readRunLog(
      runInfo.dir,
      { filter, follow: boolFlag(args, 'follow'), ...(tail !== undefined ? { tail } : {}) },
      (lines) => {
        const out = show(lines);
        return out.length > 0 ? print(out.join('\n') + '\n') : Promise.resolve();
      },
    );
    const rest = collapser?.flush() ?? [];
    if (rest.length > 0) await print(rest.join('\n') + '\n');
    if (end === 'launcher-gone') {
      process.stderr.write(
        `npurun: run ${runInfo.runId}: its npurun (pid ${runInfo.record.launcher_pid}) is gone and the log stopped growing\n`,
      );
    }
    return EXIT.ok;
  });
}

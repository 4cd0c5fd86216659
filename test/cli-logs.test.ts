import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostSpec, RunPlan } from '../src/plan/types.js';
import { parseSince } from '../src/cli/logs.js';
import { RunRecorder } from '../src/run-folder/recorder.js';
import { manualPlan } from './helpers/plan.js';
import { npurun, npurunLive, requireBuild, startRunWriter, until } from './helpers/run-writer.js';

const hosts: HostSpec[] = [
  { name: 'server-a', address: '10.213.0.11', local: true, devices: 'auto' },
  { name: 'server-b', address: '10.213.0.12', local: true, devices: 'auto' },
];
function plan(runId: string): RunPlan {
  return manualPlan(
    runId,
    hosts,
    [0, 1, 2, 3].map((rank) => ({
      rank,
      host: rank < 2 ? 'server-a' : 'server-b',
      deviceId: rank % 2,
      cwd: '/w',
      argv: ['python', 'train.py'],
      env: {},
    })),
  );
}

const cwd = mkdtempSync(join(tmpdir(), 'npurun-logs-'));
const runsDir = join(cwd, 'runs');
const OLD = '20250501-100000-old';
const RUN = '20250501-100001-resnet';

async function recordRun(runId: string, write: (rec: RunRecorder) => void): Promise<string> {
  const rec = await RunRecorder.create({ runsDir, plan: plan(runId), argv: ['npurun', 'launch'], console: 'none' });
  write(rec);
  await rec.finish({ status: 'failed', exitCode: 1, rootCause: '2' });
  return rec.dir;
}

let mergedLines: string[] = [];

beforeAll(async () => {
  requireBuild();
  mkdirSync(runsDir, { recursive: true });
  await recordRun(OLD, (rec) => rec.stream('0', 'stdout').end('from the old run\n'));
  const dir = await recordRun(RUN, (rec) => {
    const streams = [0, 1, 2, 3].map((r) => rec.stream(String(r), 'stdout'));
    for (let step = 0; step < 5; step++)
      streams.forEach((s, r) => s.write(`epoch[${step}] rank ${r} loss:${(2 - step * 0.25 - r / 100).toFixed(2)}\n`));
    rec.stream('2', 'stderr').end('Traceback (most recent call last):\nValueError: boom');
    for (const s of streams) s.end();
  });
  mergedLines = readFileSync(join(dir, 'merged.log'), 'utf8').trimEnd().split('\n');
});

describe('npurun logs (process)', () => {
  it('prints every line of the newest run by default, from ./runs', () => {
    const r = npurun(['logs'], cwd);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toEqual(mergedLines);
    expect(lines).toHaveLength(22);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z \[0 server-a dev0\] epoch\[0\] rank 0 loss:2\.00$/);
    expect(r.stdout).not.toContain('from the old run');
  });

  it('picks a run by id or unique prefix', () => {
    expect(npurun(['logs', OLD, '--runs-dir', runsDir, '--raw']).stdout).toBe('from the old run\n');
    expect(npurun(['logs', '20250501-100000', '--runs-dir', runsDir, '--raw']).stdout).toBe('from the old run\n');
  });

  it('filters by rank, host and text', () => {
    const labels = (out: string) => [
      ...new Set(
        out
          .trimEnd()
          .split('\n')
          .map((l) => /\[(\S+) /.exec(l)?.[1]),
      ),
    ];
    expect(labels(npurun(['logs', '--runs-dir', runsDir, '--rank', '1,2']).stdout)).toEqual(['1', '2']);
    expect(labels(npurun(['logs', '--runs-dir', runsDir, '--rank', '3', '--rank', '0']).stdout)).toEqual(['0', '3']);
    expect(labels(npurun(['logs', '--runs-dir', runsDir, '--host', 'server-b']).stdout)).toEqual(['2', '3']);
    expect(npurun(['logs', '--runs-dir', runsDir, '--grep', 'loss:0\\.9[89]', '--raw']).stdout).toBe(
      'epoch[4] rank 1 loss:0.99\nepoch[4] rank 2 loss:0.98\n',
    );
  });

  it('--json gives one object per line with label, host, device and stream', () => {
    const r = npurun(['logs', '--runs-dir', runsDir, '--grep', 'Error', '--json']);
    expect(r.code).toBe(0);
    const objects = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objects).toEqual([
      {
        time: expect.stringMatching(/Z$/),
        label: '2',
        host: 'server-b',
        device: 0,
        stream: 'stderr',
        line: 'ValueError: boom',
      },
    ]);
  });

  it('--tail N gives the last N matching lines', () => {
    expect(npurun(['logs', '--runs-dir', runsDir, '--tail', '3']).stdout.trimEnd().split('\n')).toEqual(
      mergedLines.slice(-3),
    );
    expect(npurun(['logs', '--runs-dir', runsDir, '--rank', '0', '--tail', '2', '--raw']).stdout).toBe(
      'epoch[3] rank 0 loss:1.25\nepoch[4] rank 0 loss:1.00\n',
    );
    expect(npurun(['logs', '--runs-dir', runsDir, '--tail', '0']).stdout).toBe('');
  });

  it('--since takes a duration or an ISO time', () => {
    expect(npurun(['logs', '--runs-dir', runsDir, '--since', '1h']).stdout.trimEnd().split('\n')).toHaveLength(22);
    expect(npurun(['logs', '--runs-dir', runsDir, '--since', '2999-01-01T00:00:00Z']).stdout).toBe('');
    const now = new Date('2025-05-01T10:00:00.000Z');
    expect(parseSince('10m', now)).toBe('2025-05-01T09:50:00.000Z');
    expect(parseSince('1.5h', now)).toBe('2025-05-01T08:30:00.000Z');
    expect(parseSince('2025-05-01T12:00:00+02:00', now)).toBe('2025-05-01T10:00:00.000Z');
  });

  it('bad input exits 2 with a message naming what was expected', () => {
    const cases: [string[], RegExp][] = [
      [['logs', 'no-such-run', '--runs-dir', runsDir], /no-such-run: no such run .*expected a run id/],
      [['logs', '--runs-dir', join(cwd, 'empty')], /no runs here; expected run folders/],
      [['logs', '--runs-dir', runsDir, '--rank', '9'], /--rank: no rank 9 .*expected labels among 0, 1, 2, 3/],
      [['logs', '--runs-dir', runsDir, '--host', 'server-z'], /--host: .*expected one of server-a, server-b/],
      [['logs', '--runs-dir', runsDir, '--grep', '('], /--grep: "\(" is not a regular expression/],
      [['logs', '--runs-dir', runsDir, '--since', 'yesterday'], /--since: "yesterday" is not a duration/],
      [['logs', '--runs-dir', runsDir, '--tail', '-1'], /tail/],
      [['logs', '--runs-dir', runsDir, '--json', '--raw'], /exclude each other/],
      [['logs', '--runs-dir', runsDir, '--colour'], /Unknown option '--colour'/],
    ];
    for (const [args, message] of cases) {
      const r = npurun(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
    }
    const help = npurun(['logs', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npurun logs \[RUN\]/);
  });

  it('--follow prints lines while the run goes on and stops when it finishes', async () => {
    const writer = await startRunWriter(runsDir, plan('20250501-100002-live'));
    writer.send({ op: 'write', label: '0', stream: 'stdout', text: 'tick 0\ntick 1\n' });
    const follow = npurunLive(['logs', '--follow', '--runs-dir', runsDir, '--raw', '20250501-100002-live']);
    await until(() => follow.stdout().includes('tick 1\n'), 10_000, 'the first lines');
    writer.send({ op: 'write', label: '3', stream: 'stderr', text: 'tick 2 from ' });
    writer.send({ op: 'write', label: '3', stream: 'stderr', text: 'rank 3\n' });
    await until(() => follow.stdout().includes('tick 2 from rank 3\n'), 10_000, 'a line written after follow started');
    expect(follow.child.exitCode).toBeNull();
    writer.send({ op: 'write', label: '1', stream: 'stdout', text: 'last words without newline' });
    writer.send({ op: 'exit', label: '1', code: 0 });
    writer.send({ op: 'finish', status: 'succeeded', exitCode: 0 });
    await writer.exited;
    expect(await follow.exited).toBe(0);
    expect(follow.stdout()).toBe('tick 0\ntick 1\ntick 2 from rank 3\nlast words without newline\n');
  });
});

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostSpec, RunPlan } from '../src/plan/types.js';
import type { RunListEntry } from '../src/cli/runs.js';
import type { RunRecord } from '../src/run-folder/record.js';
import { RunRecorder } from '../src/run-folder/recorder.js';
import { manualPlan } from './helpers/plan.js';
import { launchLocal, waitForLines, waitForNoTagged } from './helpers/local-launch.js';
import { npurun, requireBuild } from './helpers/run-writer.js';

const hosts: HostSpec[] = [
  { name: 'server-a', address: '10.213.0.11', local: true, devices: 'auto' },
  { name: 'server-b', address: '10.213.0.12', local: true, devices: 'auto' },
];
function plan(runId: string, perHost: number): RunPlan {
  const ranks = Array.from({ length: 2 * perHost }, (_, rank) => ({
    rank,
    host: rank < perHost ? 'server-a' : 'server-b',
    deviceId: rank % perHost,
    cwd: '/w',
    argv: ['python', 'train.py'],
    env: {},
  }));
  return manualPlan(runId, hosts, ranks);
}

const runsDir = mkdtempSync(join(tmpdir(), 'npurun-runs-'));

function listed(): RunListEntry[] {
  const r = npurun(['runs', '--runs-dir', runsDir, '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as RunListEntry[];
}

beforeAll(async () => {
  requireBuild();
  const ok = await RunRecorder.create({ runsDir, plan: plan('20250501-100001-ok', 4), argv: [], console: 'none' });
  await ok.finish({ status: 'succeeded', exitCode: 0 });
  const bad = await RunRecorder.create({ runsDir, plan: plan('20250501-100002-crash', 1), argv: [], console: 'none' });
  bad.rankExited('1', { code: 7, signal: null, cause: 'exited', rootCause: true });
  await bad.finish({ status: 'failed', exitCode: 7, rootCause: '1' });
});

describe('npurun runs (process)', () => {
  it('lists runs oldest first with hosts, ranks, status, exit code and root cause', () => {
    const runs = listed();
    expect(runs.map((r) => [r.runId, r.hosts, r.ranks, r.status, r.exitCode, r.rootCause])).toEqual([
      ['20250501-100001-ok', ['server-a', 'server-b'], 8, 'succeeded', 0, null],
      ['20250501-100002-crash', ['server-a', 'server-b'], 2, 'failed', 7, '1'],
    ]);
    const text = npurun(['runs', '--run-dir', runsDir]);
    expect(text.code).toBe(0);
    const rows = text.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^RUN\s+STARTED\s+HOSTS\s+RANKS\s+STATUS\s+EXIT\s+ROOT CAUSE$/);
    expect(rows[2]).toMatch(
      /^20250501-100002-crash\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+server-a,server-b\s+2\s+failed\s+7\s+rank 1$/,
    );
  });

  it('a run whose npurun was SIGKILLed mid-run still reads with `runs` and `logs`', async () => {
    // The real launcher (local mode), SIGKILLed once every rank's lines are on disk.
    const killedDir = mkdtempSync(join(tmpdir(), 'npurun-killed-'));
    const script =
      'import os, time\nr = int(os.environ["RANK"])\nfor i in range(r, 50, 4): print("step %d" % i, flush=True)\ntime.sleep(120)\n';
    const run = launchLocal({
      ranks: 4,
      runsDir: killedDir,
      remoteDir: join(killedDir, 'remote'),
      argv: ['python3', '-c', script],
    });
    await waitForLines(run, 'step ', 50);
    run.child.kill('SIGKILL');
    await run.exited;
    const killed = basename(run.runDir() as string);

    const record = JSON.parse(readFileSync(join(killedDir, killed, 'run.json'), 'utf8')) as RunRecord;
    expect(record.status).toBe('running');
    const rows = JSON.parse(npurun(['runs', '--runs-dir', killedDir, '--json']).stdout) as RunListEntry[];
    expect(rows.find((r) => r.runId === killed)).toMatchObject({
      status: 'unknown (launcher gone)',
      exitCode: null,
      ranks: 4,
    });
    expect(npurun(['runs', '--runs-dir', killedDir]).stdout).toMatch(
      new RegExp(`${killed} .* unknown \\(launcher gone\\)`),
    );

    const logs = npurun(['logs', killed, '--runs-dir', killedDir, '--raw']);
    expect(logs.code).toBe(0);
    expect(logs.stdout.trimEnd().split('\n').sort()).toEqual(Array.from({ length: 50 }, (_, i) => `step ${i}`).sort());
    // Following a run nobody writes any more ends by itself once the file stops growing (spawnSync's 20 s timeout bounds it).
    const started = Date.now();
    const follow = npurun(['logs', killed, '--runs-dir', killedDir, '--follow', '--rank', '3', '--raw']);
    expect(follow.code).toBe(0);
    expect(follow.stdout.trimEnd().split('\n')).toEqual(Array.from({ length: 12 }, (_, i) => `step ${4 * i + 3}`));
    expect(follow.stderr).toMatch(/is gone and the log stopped growing/);
    process.stdout.write(`logs --follow of a SIGKILLed run ended after ${Date.now() - started} ms\n`);
    expect(await waitForNoTagged(run.tag, 20_000)).toEqual([]);
  }, 60_000);

  it('a running record from another machine shows as "running?"', () => {
    const file = join(runsDir, '20250501-100001-ok', 'run.json');
    const record = JSON.parse(readFileSync(file, 'utf8')) as RunRecord;
    writeFileSync(
      join(runsDir, '20250501-100001-ok', 'run.json'),
      JSON.stringify({ ...record, status: 'running', launcher_host: 'some-other-launcher' }),
    );
    try {
      expect(listed().find((r) => r.runId === '20250501-100001-ok')?.status).toBe('running?');
    } finally {
      writeFileSync(file, JSON.stringify(record));
    }
  });

  it('18.10: one unreadable or newer run.json is listed as unreadable and skipped; runs, logs and summary keep working for the others', () => {
    const dir = mkdtempSync(join(tmpdir(), 'npurun-unreadable-'));
    const good = JSON.parse(readFileSync(join(runsDir, '20250501-100002-crash', 'run.json'), 'utf8')) as RunRecord;
    const write = (name: string, text: string) => {
      mkdirSync(join(dir, name), { recursive: true });
      writeFileSync(join(dir, name, 'run.json'), text);
    };
    write('20250501-100002-crash', JSON.stringify(good));
    writeFileSync(join(dir, '20250501-100002-crash', 'merged.log'), '');
    const { started_at: _, ...partial } = good;
    write('20250502-000000-partial', JSON.stringify({ ...partial, run_id: '20250502-000000-partial' }));
    write('20250503-000000-newer', JSON.stringify({ ...good, schema_version: 2, run_id: '20250503-000000-newer' }));
    write('20250504-000000-garbage', '{"run_id": ');
    mkdirSync(join(dir, 'not-a-run')); // no run.json at all: not a run folder, not listed

    const text = npurun(['runs', '--runs-dir', dir]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^20250501-100002-crash\s.*failed/m);
    expect(text.stdout).toMatch(/^20250502-000000-partial\s+-\s.*unreadable/m);
    expect(text.stdout).not.toMatch(/not-a-run/);
    expect(text.stderr).toMatch(/run 20250502-000000-partial is unreadable and skipped: .*run\.json: .*started_at/);
    expect(text.stderr).toMatch(
      /run 20250503-000000-newer is unreadable and skipped: .*schema_version 2 is newer than this npurun reads \(1\)/,
    );
    expect(text.stderr).toMatch(/run 20250504-000000-garbage is unreadable and skipped: .*not valid JSON/);
    const rows = JSON.parse(npurun(['runs', '--runs-dir', dir, '--json']).stdout) as RunListEntry[];
    expect(rows.map((r) => [r.runId, r.status])).toEqual([
      ['20250501-100002-crash', 'failed'],
      ['20250502-000000-partial', 'unreadable'],
      ['20250503-000000-newer', 'unreadable'],
      ['20250504-000000-garbage', 'unreadable'],
    ]);
    // The newest readable run is the default for every reader; none crashes.
    for (const cmd of [
      ['logs', '--runs-dir', dir],
      ['summary', '--run-dir', dir],
    ]) {
      const r = npurun(cmd);
      expect(r.code, `${cmd[0]}: ${r.stderr}`).toBe(0);
      expect(r.stderr).not.toMatch(/internal error/);
    }
    // Naming an unreadable run says why, as bad input (exit 2), not an internal error.
    const named = npurun(['summary', '20250503-000000-newer', '--run-dir', dir]);
    expect(named.code).toBe(2);
    expect(named.stderr).toMatch(/run folder cannot be read: .*schema_version 2 is newer/);
  });

  it('an empty run folder, bad flags and --help', () => {
    const empty = npurun(['runs', '--runs-dir', join(runsDir, 'nothing-here')]);
    expect(empty.code).toBe(0);
    expect(empty.stderr).toMatch(/no runs in .*nothing-here/);
    expect(npurun(['runs', '--runs-dir', join(runsDir, 'nothing-here'), '--json']).stdout).toBe('[]\n');
    const bad = npurun(['runs', '--all']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Unknown option '--all'.*npurun runs --help/);
    const positional = npurun(['runs', 'some-run']);
    expect(positional.code).toBe(2);
    expect(positional.stderr).toMatch(/npurun runs: .*some-run/);
    const help = npurun(['runs', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: npurun runs/);
  });
});

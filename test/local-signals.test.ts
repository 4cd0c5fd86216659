import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';
import { launchLocal, taggedPids, waitForLines, waitForNoTagged, type LocalRun } from './helpers/local-launch.js';

// Local mode (`npurun launch --simulate 8`, the README's demo and every bench row) stopped by a signal:
// a real launcher and real ranks, then `runs`, `logs` and `ps` on its run folder, and a /proc scan for
// the ranks' TEST_TAG proving nothing is left. Behaviour only: it holds for any launcher design.

const base = mkdtempSync(join(tmpdir(), 'npurun-local-signals-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
beforeAll(() => ensureBuilt(), 120_000);

const RANK = 'import os, time\nprint("ready", os.environ["RANK"], flush=True)\ntime.sleep(120)\n';

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [NPURUN_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** 8 ranks up and printing, every one of them found by its tag in /proc and by `npurun ps`. */
async function startEight(name: string): Promise<{ run: LocalRun; runId: string }> {
  const run = launchLocal({
    ranks: 8,
    runsDir: join(base, name),
    remoteDir: join(base, `${name}-remote`),
    argv: ['python3', '-c', RANK],
  });
  await waitForLines(run, 'ready', 8);
  const runId = basename(run.runDir() as string);
  // The checks below must be able to fail: while the run lives, both see all 8 ranks.
  expect(taggedPids(run.tag).length).toBeGreaterThanOrEqual(8);
  const ps = cli(['ps', runId, '--run-dir', run.runsDir]);
  expect(ps.code, ps.stderr).toBe(0);
  expect(
    [...ps.stdout.matchAll(new RegExp(`run ${runId} rank (\\d+) pid \\d+: running`, 'g'))].map((m) => m[1]).sort(),
  ).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
  return { run, runId };
}

/** After the run: its folder reads with `runs` and `logs`, `ps` finds nothing, nor does /proc. */
async function checkAfter(run: LocalRun, runId: string, status: RegExp, leftWithinMs: number): Promise<void> {
  const left = await waitForNoTagged(run.tag, leftWithinMs);
  expect(left, `still running: ${left.join(' ')}`).toEqual([]);
  const runs = cli(['runs', '--runs-dir', run.runsDir]);
  expect(runs.code, runs.stderr).toBe(0);
  expect(runs.stdout).toMatch(new RegExp(`^${runId} .* 8 +${status.source}`, 'm'));
  const logs = cli(['logs', runId, '--runs-dir', run.runsDir, '--raw']);
  expect(logs.code, logs.stderr).toBe(0);
  expect(logs.stdout.trimEnd().split('\n').sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((r) => `ready ${r}`));
  const ps = cli(['ps', runId, '--run-dir', run.runsDir]);
  expect(ps.code, ps.stderr).toBe(0);
  expect(ps.stdout).not.toMatch(/running/);
  expect(ps.stdout).toMatch(/nothing left/);
}

describe('npurun launch --simulate 8 stopped by a signal (real launcher, real ranks)', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    '%s: the ranks are stopped, npurun exits %i, run.json says it was stopped, nothing is left',
    async (signal, code) => {
      const { run, runId } = await startEight(signal);
      const sentAt = Date.now();
      run.child.kill(signal);
      const exit = await run.exited;
      process.stdout.write(`local ${signal}: npurun exited ${Date.now() - sentAt} ms after the signal\n`);
      expect(exit, run.stderr()).toEqual({ code, signal: null });
      expect(run.stderr()).toContain(`npurun received ${signal}`);
      // Nothing may outlive the launcher: checked at once, with only the time /proc needs to reap.
      // "interrupted" today; issue 17.10 may rename a deliberate stop "stopped".
      await checkAfter(run, runId, /(?:interrupted|stopped) +\d+/, 2000);
      const record = JSON.parse(readFileSync(join(run.runDir() as string, 'run.json'), 'utf8')) as {
        status: string;
        exit_code: number;
        ranks: unknown[];
      };
      expect(record.status).toMatch(/^(interrupted|stopped)$/);
      expect(record.exit_code).toBe(code);
      expect(record.ranks).toHaveLength(8);
    },
    90_000,
  );

  it('SIGKILL: the ranks stop by themselves within the heartbeat timeout; runs shows the launcher gone; logs and ps read the folder', async () => {
    const { run, runId } = await startEight('SIGKILL');
    const sentAt = Date.now();
    run.child.kill('SIGKILL');
    expect(await run.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // Heartbeat timeout (3 s) plus the grace (10 s) plus slack for 2 busy cores.
    await checkAfter(run, runId, /unknown \(launcher gone\)/, 20_000);
    process.stdout.write(`local SIGKILL: nothing left ${Date.now() - sentAt} ms after the signal\n`);
    const record = JSON.parse(readFileSync(join(run.runDir() as string, 'run.json'), 'utf8')) as { status: string };
    expect(record.status).toBe('running');
  }, 90_000);
});

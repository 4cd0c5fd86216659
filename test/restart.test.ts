import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { itWithTorch } from './cluster/index.js';
import { freePort } from './helpers/free-port.js';
import { restartBackoff } from '../src/launch/launch.js';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';
import { taggedPids } from './helpers/local-launch.js';

describe('restart backoff', () => {
  it('doubles from 3 s up to 60 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(restartBackoff)).toEqual([3, 6, 12, 24, 48, 60, 60]);
  });
});

interface Record {
  status: string;
  exit_code: number;
  attempts: {
    attempt: number;
    cause: string;
    root_cause: string | null;
    exit_code: number;
    resumed_from: { epoch: number; files: { [k: string]: string } } | null;
  }[];
}

describe('--max-restarts: a real gloo job that loses a rank at epoch 3 of 6', () => {
  let port = 0;
  beforeAll(async () => {
    await ensureBuilt();
    port = await freePort();
  }, 120_000);

  const run = (name: string, extraEnv: string[], restarts: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), `npurun-restart-${name}-`));
    const job = join(dir, 'job.yaml');
    const program = fileURLToPath(new URL('./programs/restart_job.py', import.meta.url));
    writeFileSync(
      job,
      `profile: torch\ncommand: [/usr/bin/python3, ${program}]\nworkdir: ${dir}/work\ncheckpoint:\n  interval: 1\n  keep_max: 10\n  dir: ckpt_{rank}\n`,
    );
    const tag = `restart-${name}-${process.pid}`;
    const r = spawnSync(
      process.execPath,
      [
        NPURUN_BIN,
        'launch',
        '--job',
        job,
        '--simulate',
        '2',
        '--console',
        'all',
        '--run-dir',
        join(dir, 'runs'),
        '--master-port',
        String(port),
        '--remote-dir',
        join(dir, 'remote', '{run_id}'),
        '--env',
        `TEST_TAG=${tag}`,
        ...extraEnv.flatMap((e) => ['--env', e]),
        ...restarts,
      ],
      { encoding: 'utf8', timeout: 240_000 },
    );
    const runs = join(dir, 'runs');
    const folder = join(runs, readdirSync(runs).find((d) => existsSync(join(runs, d, 'run.json'))) as string);
    return {
      r,
      runs,
      record: JSON.parse(readFileSync(join(folder, 'run.json'), 'utf8')) as Record,
      final: /FINAL ([0-9a-f]{64})/.exec(r.stdout)?.[1],
      tag,
    };
  };

  itWithTorch(
    'restarts once from the newest complete checkpoint and ends with the very weights of an uninterrupted run',
    async () => {
      const clean = run('clean', [], []);
      expect(clean.r.status, clean.r.stderr).toBe(0);
      expect(clean.final).toBeDefined();
      const crashed = run('crash', ['CRASH_AT=3', 'CRASH_RANK=1'], ['--max-restarts', '2']);
      expect(crashed.r.status, crashed.r.stderr).toBe(0);
      expect(crashed.r.stderr).toMatch(/attempt 1 failed; restarting in 3 s \(2 restarts left\)/);
      // Which epoch depends on how far the watcher saw saves settle before the crash (1-3); any is right.
      expect(crashed.r.stderr).toMatch(/attempt 2 resumes from epoch [123], step [123]/);
      expect(crashed.record.attempts.map((a) => [a.attempt, a.cause, a.root_cause, a.exit_code])).toEqual([
        [1, 'exited', '1', 9],
        [2, 'succeeded', null, 0],
      ]);
      const from = crashed.record.attempts[1]?.resumed_from;
      expect(from?.epoch).toBeGreaterThanOrEqual(1);
      expect(Object.keys(from?.files ?? {}).sort()).toEqual(['0', '1']);
      expect(crashed.record.status).toBe('succeeded');
      expect(crashed.final).toBe(clean.final);
      expect(taggedPids(crashed.tag)).toEqual([]);
      // Each attempt's lines apart: the crash in the first, the resume in the second.
      const logs = (k: number) =>
        spawnSync(process.execPath, [NPURUN_BIN, 'logs', '--runs-dir', crashed.runs, '--attempt', String(k), '--raw'], {
          encoding: 'utf8',
        }).stdout;
      expect(logs(1)).toMatch(/crashing after epoch 3/);
      expect(logs(1)).not.toMatch(/resumed from/);
      expect(logs(2)).toMatch(/resumed from 1-[123]_[123]\.ckpt/);
      expect(logs(2)).not.toMatch(/crashing/);
    },
    300_000,
  );

  itWithTorch(
    "a budget used up ends with the last attempt's root cause, every attempt in run.json",
    async () => {
      // Rank 0 dies before training in every attempt.
      const r = run('budget', ['CRASH_AT_START=0'], ['--max-restarts', '1']);
      expect(r.r.status, r.r.stderr).toBe(9);
      expect(r.record.status).toBe('failed');
      expect(r.record.attempts.map((a) => [a.attempt, a.cause, a.root_cause])).toEqual([
        [1, 'exited', '0'],
        [2, 'exited', '0'],
      ]);
      expect(r.r.stderr).toMatch(/attempt 2 starts from the beginning: no checkpoint every saving rank completed/);
      expect(r.r.stderr).not.toMatch(/restarting in 6 s/);
    },
    300_000,
  );
});

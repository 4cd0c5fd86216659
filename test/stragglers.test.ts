import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { judgeStragglers } from '../src/summary/stragglers.js';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';

describe('stragglers (pure)', () => {
  const ranks = (f: (i: number) => { said?: number[]; progress?: number[] }) =>
    new Map(
      [0, 1, 2, 3].map((i) => [String(i), { host: i < 2 ? 'a' : 'b', device: i, said: [], progress: [], ...f(i) }]),
    );

  it('names ranks 1.3x the median of medians or slower, from the step times they printed', () => {
    const got = judgeStragglers(ranks((i) => ({ said: Array(20).fill(i === 3 ? 200 : 100) })));
    expect(got.map((s) => [s.label, s.host, s.ratio])).toEqual([['3', 'b', 2]]);
  });

  it('falls back to the arrival of progress lines; a rank with too few steps or a single slow step is not named', () => {
    const steps = (every: number, n = 30) => Array.from({ length: n }, (_, k) => k * every);
    const spiky = steps(100).map((t, k) => (k > 20 ? t + 500 : t)); // one long pause, then normal pace
    expect(
      judgeStragglers(
        ranks((i) => ({ progress: i === 1 ? steps(190) : i === 2 ? spiky : i === 3 ? steps(100, 3) : steps(100) })),
      ).map((s) => s.label),
    ).toEqual(['1']);
    expect(judgeStragglers(ranks(() => ({ progress: steps(100) })))).toEqual([]);
  });
});

describe('npurun summary names stragglers of a real run', () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it('ranks 4-7 (say, one host) sleeping twice as long per step are named, and only they', () => {
    const runs = mkdtempSync(join(tmpdir(), 'npurun-stragglers-'));
    const job =
      'import os, time\nslow = int(os.environ["RANK"]) >= 4\nfor i in range(12):\n    time.sleep(0.3 if slow else 0.15)\n    print("epoch[1], iter[%d], loss:1.0" % i, flush=True)\n';
    const r = spawnSync(
      process.execPath,
      [
        NPURUN_BIN,
        'launch',
        '--simulate',
        '8',
        '--profile',
        'torch',
        '--console',
        'none',
        '--run-dir',
        runs,
        '--remote-dir',
        join(runs, 'remote', '{run_id}'),
        '--',
        '/usr/bin/python3',
        '-c',
        job,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const named = (text: string) => [...text.matchAll(/straggler: rank (\d+) /g)].map((m) => m[1]).sort();
    expect(named(r.stderr)).toEqual(['4', '5', '6', '7']);
    const s = spawnSync(process.execPath, [NPURUN_BIN, 'summary', '--runs-dir', runs], { encoding: 'utf8' });
    expect(named(s.stdout)).toEqual(['4', '5', '6', '7']);
    expect(s.stdout).toMatch(
      /straggler: rank 4 \(host [^,]+, dev 4\) \d\.\dx the median step time over the last 11 steps/,
    );
  });
});

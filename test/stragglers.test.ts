import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  judgeStragglers,
  noteStepTime,
  progressRegExp,
  StragglerWatch,
  type RankTimes,
} from '../src/summary/stragglers.js';
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

describe('stragglers live (StragglerWatch)', () => {
  const progress = progressRegExp(undefined);
  type Rank = { label: string; host: string; device: number };
  const timesOf = (ranks: Rank[]) =>
    new Map<string, RankTimes>(ranks.map((r) => [r.label, { host: r.host, device: r.device, said: [], progress: [] }]));
  const note = (times: Map<string, RankTimes>, label: string, line: string, ms: number) =>
    noteStepTime(times.get(label) as RankTimes, line, new Date(ms).toISOString(), progress);
  /** 1024 ranks on 128 hosts of 8; ranks of `slow` hosts print a progress line every 200 ms, the others every 100 ms. */
  const feed = (slow: Set<number>, seconds: number) => {
    const ranks = Array.from({ length: 1024 }, (_, i) => ({ label: String(i), host: `n${i >> 3}`, device: i % 8 }));
    const times = timesOf(ranks);
    for (let t = 0; t <= seconds * 1000; t += 100)
      for (const r of ranks)
        if (!slow.has(Number(r.label) >> 3) || t % 200 === 0) note(times, r.label, `epoch[1], iter[${t}], loss:1.0`, t);
    return times;
  };

  it('a slow host of a 1024-rank run is one line naming its ranks, devices, how much slower and how far behind; then quiet', () => {
    const times = feed(new Set([5]), 3);
    const watch = new StragglerWatch();
    const start = performance.now();
    const lines = watch.check(times, 3000);
    console.log(`one live check of 1024 ranks: ${(performance.now() - start).toFixed(1)} ms`);
    expect(lines).toEqual([
      'straggler: host n5, ranks 40-47 (dev 0-7) 2.0x the median step time (200 ms vs 100 ms), 15 steps behind',
    ]);
    // Named once: not again at the next checks, again once repeatMs has passed.
    expect(watch.check(times, 8000)).toEqual([]);
    expect(watch.check(times, 3000 + 300_000)).toHaveLength(1);
  });

  it('one slow rank is named with its host and device; nothing when none is slow', () => {
    const ranks = ['a', 'a', 'b', 'b'].map((host, i) => ({ label: String(i), host, device: (i % 2) + 2 }));
    const times = timesOf(ranks);
    for (let t = 0; t <= 3000; t += 100)
      for (const r of ranks) if (r.label !== '3' || t % 300 === 0) note(times, r.label, `step ${t}`, t);
    note(times, '0', 'a line that is no progress', 3000);
    expect(new StragglerWatch().check(times, 3000)).toEqual([
      'straggler: rank 3 (host b, dev 3) 3.0x the median step time (300 ms vs 100 ms), 20 steps behind',
    ]);
    expect(new StragglerWatch().check(feed(new Set(), 3), 3000)).toEqual([]);
  });

  it('many slow hosts: at most 4 host lines and one counting the rest', () => {
    const lines = new StragglerWatch().check(feed(new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 3), 3000);
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatch(
      /^straggler: 48 more ranks on 6 more hosts behind \(n\d+, .*\); `npurun summary` lists them$/,
    );
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

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
// The bench's own line checker (plain JavaScript beside bench.mjs).
import { checkMergedLog, checkRankLog, expectedLine } from '../bench/check-logs.mjs';
import { describeCluster } from './cluster/index.js';
import { requireBuild } from './helpers/run-writer.js';

// What this file proves (bench/README.md says the same): a cut-down bench passes on healthy output, and
// it exits 1 when a writer drops, cuts or reorders a line, when a rank is missing, and when pdsh fails
// fast. Ratios are not checked here: they are measurements, not claims.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'npurun-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Results {
  environment: { node: string };
  rows: {
    key: string;
    npurun?: { samples: number[] };
    memory?: { launcherRssKiB: number }[];
    hosts?: { hosts: number; npurun?: { samples: number[] } }[];
  }[];
  targets: { row: string; what: string; value: number; met: boolean }[];
  notes: string[];
  problems: string[];
}

let seq = 0;
// Asynchronous on purpose: a synchronous spawn blocks vitest's worker, whose RPC times out when the
// hosts case waits minutes for the cluster lock.
async function bench(
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string; results: Results }> {
  const out = join(dir, `results-${seq++}.json`);
  const r = await execa(process.execPath, [join(ROOT, 'bench', 'bench.mjs')], {
    cwd: ROOT,
    reject: false,
    // The hosts case may queue behind other cluster tests for the cluster lock.
    timeout: 1_150_000,
    env: {
      BENCH_TORCH: '0',
      BENCH_LINES: '500',
      BENCH_REPEAT: '1',
      BENCH_WARMUP: '0',
      BENCH_SCALE: '1,2',
      BENCH_OUT: out,
      ...env,
    },
  });
  return {
    code: r.exitCode ?? null,
    stdout: r.stdout,
    stderr: r.stderr,
    results: JSON.parse(readFileSync(out, 'utf8')) as Results,
  };
}

describe('bench, cut down (500 lines, 1 round, no torchrun)', () => {
  requireBuild();

  it('passes on healthy output: every line checked, run.json read, launcher RSS measured, nothing left', async () => {
    const r = await bench({ BENCH_ROWS: 'local,failure,logs,memory,ranktable', BENCH_MEM: '8x2' });
    expect(r.results.problems, r.stderr).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain('!!!');
    expect(r.results.environment.node).toBe(process.version);
    expect(r.results.notes.join('\n')).toMatch(
      /every line checked .*: npurun: every line saved; floor: every line saved/,
    );
    expect(r.stdout).toContain('ps check after the bench: no process started by the bench is still running');
    for (const key of ['local', 'failure', 'logs'])
      expect(r.results.rows.find((row) => row.key === key)?.npurun?.samples).toHaveLength(1);
    // A target is a measurement with a bound; the 300 MiB memory bound holds for 2 ranks x 8 MiB.
    const mem = r.results.rows.find((row) => row.key === 'memory')?.memory ?? [];
    expect(mem).toHaveLength(1);
    expect(mem[0]?.launcherRssKiB).toBeGreaterThan(20 * 1024);
    expect(r.results.targets.find((t) => t.row === 'memory')?.met).toBe(true);
    expect(r.results.targets.find((t) => t.row === 'local')?.what).toMatch(/node -e 0/);
  }, 120_000);

  it.each([
    ['drop-line', /line 251 is "rank 3 line 251 .*", expected "rank 3 line 250 /],
    ['cut-line', /line 251 is "rank ", expected "rank 3 line 250 /],
    ['swap-lines', /line 251 is "rank 3 line 251 .*", expected "rank 3 line 250 /],
  ])(
    'exits 1 when a writer breaks one line (%s), for npurun and the floor alike',
    async (fault, message) => {
      const r = await bench({ BENCH_ROWS: 'logs', BENCH_FAULT: fault });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('!!!');
      const lost = r.results.problems.filter((p) => message.test(p));
      expect(lost.map((p) => p.split(':')[0])).toEqual(['log throughput, npurun', 'log throughput, floor']);
      expect(r.stdout).toContain('npurun: LINES LOST OR DAMAGED; floor: LINES LOST OR DAMAGED');
    },
    120_000,
  );

  it('exits 1 when npurun starts 7 ranks where 8 were asked (run.json and the missing rank-7.log)', async () => {
    const r = await bench({ BENCH_ROWS: 'local,logs', BENCH_FAULT: 'missing-rank' });
    expect(r.code).toBe(1);
    expect(r.results.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^local start, npurun: run\.json of \S+: 7 ranks \(world_size 7\), expected 8$/),
        expect.stringMatching(/^log throughput, npurun: run\.json of \S+: 7 ranks/),
        expect.stringMatching(/^log throughput, npurun: \S+\/rank-7\.log: missing$/),
      ]),
    );
  }, 300_000);
});

describe("the bench's merged.log check", () => {
  const good = [0, 1, 2, 3, 4, 5].map(
    (i) => `2026-01-01T00:00:00.00${i}Z [${i % 2} vm dev${i % 2}] ${expectedLine(i % 2, Math.floor(i / 2))}`,
  );
  const merged = (lines: string[]): string => {
    const file = join(dir, `merged-${seq++}.log`);
    writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
    return file;
  };

  it('accepts every rank whole and in order, however interleaved', () => {
    expect(checkMergedLog(merged(good), 2, 3)).toBeUndefined();
    expect(checkMergedLog(merged([good[1]!, good[0]!, good[3]!, good[5]!, good[2]!, good[4]!]), 2, 3)).toBeUndefined();
  });

  it.each([
    [
      'a cut line',
      (l: string[]) => [l[0]!.slice(0, 40), ...l.slice(1)],
      /line 1 has no rank prefix|line 1, rank 0's line 1, is/,
    ],
    [
      'a line cut to its prefix',
      (l: string[]) => [l[0]!.replace(/\] .*/, '] rank '), ...l.slice(1)],
      /line 1, rank 0's line 1, is "rank "/,
    ],
    [
      'a line given to the wrong rank',
      (l: string[]) => [l[0]!.replace('[0 vm dev0]', '[1 vm dev1]'), ...l.slice(1)],
      /rank 1's line 1, is "rank 0 line 0/,
    ],
    ['a duplicated line', (l: string[]) => [l[0]!, l[0]!, ...l.slice(1)], /line 2, rank 0's line 2, is "rank 0 line 0/],
    ['a lost line', (l: string[]) => l.slice(0, 5), /rank 1 has 2 lines; expected 3 each/],
    ['two lines swapped', (l: string[]) => [l[2]!, l[1]!, l[0]!, ...l.slice(3)], /rank 0's line 1, is "rank 0 line 1/],
  ])('rejects %s', (_, mutate, message) => {
    expect(checkMergedLog(merged(mutate(good)), 2, 3)).toMatch(message);
  });

  it('a per-rank log without its last newline, or with a line too many, is rejected', () => {
    const file = join(dir, 'rank.log');
    writeFileSync(file, `${expectedLine(0, 0)}\n${expectedLine(0, 1)}`);
    expect(checkRankLog(file, 0, 2)).toMatch(/ends in a line without a newline/);
    writeFileSync(file, `${expectedLine(0, 0)}\n${expectedLine(0, 1)}\n${expectedLine(0, 2)}\n`);
    expect(checkRankLog(file, 0, 2)).toMatch(/more than 2 lines/);
    expect(checkRankLog(join(dir, 'nope.log'), 0, 2)).toMatch(/missing/);
  });
});

describeCluster('bench hosts row on 2 namespaced hosts', () => {
  it('counts every pdsh answer: a pdsh that fails fast makes the bench exit 1; npurun runs are checked and pass', async () => {
    // The bench takes /tmp/npurun-cluster.lock for this row, unless the test runs under `flock` on it already.
    const r = await bench({ BENCH_ROWS: 'hosts', BENCH_HOSTS: '2', BENCH_FAULT: 'pdsh-fail', BENCH_SLOW_LOGIN: '0' });
    expect(r.code).toBe(1);
    expect(r.results.problems).toEqual([expect.stringMatching(/^hosts, 2 × 8, pdsh: .*exited 255/s)]);
    const row = r.results.rows.find((x) => x.key === 'hosts');
    expect(row?.hosts?.[0]?.npurun?.samples).toHaveLength(1);
    expect(r.stdout).toContain('ps check after the bench: no process started by the bench is still running');
  }, 1_200_000);
});

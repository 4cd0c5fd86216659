import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { requireBuild } from './helpers/run-writer.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Timing {
  secs: number;
  samples: number[];
}
interface Results {
  environment: { node: string; cores: number };
  rows: {
    key: string;
    npurun?: Timing;
    peers?: (Timing & { name: string; ratio: number })[];
    scale?: { servers: number; ranks: number; secs: number; bytes: number; perServerVs1: number }[];
  }[];
  notes: string[];
  problems: string[];
}

it('bench, cut down to a small log row and two rank-table sizes, reports ratios and verified line counts', () => {
  requireBuild();
  const dir = mkdtempSync(join(tmpdir(), 'npurun-bench-smoke-'));
  const out = join(dir, 'results.json');
  const r = spawnSync(process.execPath, ['--expose-gc', join(ROOT, 'bench', 'bench.mjs')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 50_000,
    env: { ...process.env, BENCH_ROWS: 'logs,ranktable', BENCH_TORCH: '0', BENCH_LINES: '500', BENCH_REPEAT: '1', BENCH_WARMUP: '0', BENCH_SCALE: '1,2', BENCH_OUT: out },
  });
  expect(r.stderr).not.toContain('!!!');
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('| measurement | npurun | compared with | its time | npurun ÷ it |');

  const results = JSON.parse(readFileSync(out, 'utf8')) as Results;
  rmSync(dir, { recursive: true, force: true });
  expect(results.problems).toEqual([]);
  expect(results.environment.node).toBe(process.version);

  const logs = results.rows.find((row) => row.key === 'logs');
  const floor = logs?.peers?.find((p) => p.name.includes('(floor)'));
  expect(logs?.npurun?.samples).toHaveLength(1);
  expect(floor?.ratio).toBeCloseTo((logs?.npurun?.secs ?? NaN) / (floor?.secs ?? NaN), 6);
  expect(results.notes.join('\n')).toMatch(/npurun: every line saved; floor: every line saved/);

  const scale = results.rows.find((row) => row.key === 'ranktable')?.scale ?? [];
  expect(scale.map((s) => [s.servers, s.ranks])).toEqual([
    [1, 8],
    [2, 16],
  ]);
  const [one, two] = scale;
  expect(one?.perServerVs1).toBe(1);
  expect(two?.bytes).toBeGreaterThan(one?.bytes ?? Infinity);
  expect(r.stdout).toContain('ps check after the bench: no process started by the bench is still running');
});

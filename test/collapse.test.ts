import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Collapser, rankSet } from '../src/run-folder/collapse.js';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';

describe('console collapse (pure)', () => {
  it('names rank sets as ranges', () => {
    expect(rankSet([3, 0, 1, 2, 5, 7, 8])).toBe('r0-3,5,7-8');
    expect(rankSet(['sched', 0])).toBe('r0,sched');
  });

  it('folds the same line of several ranks within the window, keeps order, bounds what it holds', () => {
    const c = new Collapser(100, 3);
    expect(c.push(0, 'loss 1.0', 0)).toEqual([]);
    expect(c.push(1, 'loss 1.0', 10)).toEqual([]);
    expect(c.push(1, 'only me', 20)).toEqual([]);
    expect(c.push(2, 'loss 1.0', 50)).toEqual([]);
    expect(c.push(0, 'later', 120)).toEqual(['[r0-2] loss 1.0', '[r1] only me']);
    expect(c.push(1, 'a', 130)).toEqual([]);
    expect(c.push(1, 'b', 131)).toEqual([]);
    expect(c.push(1, 'c', 132)).toEqual(['[r0] later']); // more than 3 pending: the oldest is shown at once
    expect(c.flush()).toEqual(['[r1] a', '[r1] b', '[r1] c']);
  });
});

describe('npurun launch --console collapse (real launcher, 8 ranks)', () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it("shows a line all ranks print once as [r0-7], each rank's own line with its rank; files keep every line", () => {
    const runs = mkdtempSync(join(tmpdir(), 'npurun-collapse-'));
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
        'collapse',
        '--run-dir',
        runs,
        '--remote-dir',
        join(runs, 'remote', '{run_id}'),
        '--',
        'sh',
        '-c',
        'echo "loading dataset"; echo "rank $RANK ready"',
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.filter((l) => l.includes('loading dataset'))).toEqual(['[r0-7] loading dataset']);
    expect(lines.filter((l) => l.includes('ready')).sort()).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `[r${i}] rank ${i} ready`).sort(),
    );
    const logs = spawnSync(process.execPath, [NPURUN_BIN, 'logs', '--runs-dir', runs, '--raw'], { encoding: 'utf8' });
    expect(logs.stdout.split('\n').filter((l) => l === 'loading dataset')).toHaveLength(8);
    const folded = spawnSync(process.execPath, [NPURUN_BIN, 'logs', '--runs-dir', runs, '--collapse'], {
      encoding: 'utf8',
    });
    expect(folded.status, folded.stderr).toBe(0);
    expect(folded.stdout.split('\n').filter((l) => l.includes('loading dataset'))).toEqual(['[r0-7] loading dataset']);
  });
});

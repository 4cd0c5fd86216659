import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { itWithTorch } from './cluster/index.js';
import { freePort } from './helpers/free-port.js';
import { hangCulprits, HangWatch, pythonFrames, STARTUP_FACTOR, type Frame } from '../src/supervise/hang.js';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';
import { taggedPids } from './helpers/local-launch.js';

describe('hang rules (pure)', () => {
  it('a hang is no progress from any rank for the timeout (5x before the first progress); ended ranks do not count', () => {
    const w = new HangWatch(['0', '1'], 1000, undefined, 0);
    expect(w.check(STARTUP_FACTOR * 1000 - 1)).toBeUndefined();
    w.line('0', 'epoch[1], iter[10], loss:2.0', 100);
    expect(w.check(1099)).toBeUndefined();
    w.line('1', 'just chatter', 1050); // not progress
    w.line('1', '{"npurun":"progress","step":3}', 900);
    expect(w.check(1500)).toBeUndefined();
    expect(w.check(1900)).toEqual({
      silentMs: 1000,
      order: [
        { label: '0', at: 100 },
        { label: '1', at: 900 },
      ],
    });
    w.ended('0');
    w.ended('1');
    expect(w.check(99_999)).toBeUndefined();
  });

  it('a custom progress pattern replaces the default', () => {
    const w = new HangWatch(['0'], 1000, 'tick \\d+', 0);
    w.line('0', 'epoch[1]', 500);
    expect(w.check(STARTUP_FACTOR * 1000)).toBeDefined();
    w.line('0', 'tick 7', STARTUP_FACTOR * 1000);
    expect(w.check(STARTUP_FACTOR * 1000 + 999)).toBeUndefined();
  });

  it('reads the current thread of the last faulthandler dump, innermost first, [stderr] marks or not', () => {
    const lines = [
      'step 2',
      '[stderr] Fatal Python error: Aborted',
      '[stderr] ',
      '[stderr] Thread 0x00007f00000002 (most recent call first):',
      '[stderr]   File "/x/loader.py", line 5 in worker',
      '[stderr] ',
      '[stderr] Current thread 0x00007f00000001 (most recent call first):',
      '[stderr]   File "/usr/lib/python3/dist-packages/torch/distributed/distributed_c10d.py", line 1541 in all_reduce',
      '[stderr]   File "/job/train.py", line 18 in <module>',
    ];
    expect(pythonFrames(lines)).toEqual([
      { file: '/usr/lib/python3/dist-packages/torch/distributed/distributed_c10d.py', line: 1541, func: 'all_reduce' },
      { file: '/job/train.py', line: 18, func: '<module>' },
    ]);
    expect(pythonFrames(['no dump here'])).toEqual([]);
  });

  it('blames the odd one out when the others share a top frame, else the ranks that stopped first', () => {
    const f = (func: string): Frame[] => [{ func, file: 'x.py', line: 1 }];
    const order = ['0', '1', '2', '3'].map((label, i) => ({ label, at: i === 2 ? 0 : 5000 }));
    const frames = new Map([
      ['0', f('all_reduce')],
      ['1', f('all_reduce')],
      ['2', f('all_reduce')],
      ['3', f('<module>')],
    ]);
    expect(hangCulprits({ silentMs: 9000, order }, frames)).toEqual({
      labels: ['3'],
      why: 'the other 3 ranks wait in all_reduce',
    });
    const same = new Map([
      ['0', f('wait')],
      ['1', f('wait')],
      ['2', f('wait')],
      ['3', f('wait')],
    ]);
    expect(hangCulprits({ silentMs: 9000, order: [...order].sort((a, b) => a.at - b.at) }, same)).toEqual({
      labels: ['2'],
      why: 'stopped making progress first',
    });
  });
});

describe('a real hang: one gloo rank of 8 stops before an all_reduce, the others block in it', () => {
  let port = 0;
  beforeAll(async () => {
    await ensureBuilt();
    port = await freePort();
  }, 120_000);

  itWithTorch(
    '--hang-timeout 5: npurun names that rank, shows the others in all_reduce, exits 124, leaves nothing',
    async () => {
      const runs = mkdtempSync(join(tmpdir(), 'npurun-hang-'));
      const tag = `hang-${process.pid}`;
      const job = fileURLToPath(new URL('./programs/hang_job.py', import.meta.url));
      // A free port: another gloo job on this machine may hold the default 29500.
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
          '--master-port',
          String(port),
          '--remote-dir',
          join(runs, 'remote', '{run_id}'),
          '--hang-timeout',
          '5',
          '--env',
          `TEST_TAG=${tag}`,
          '--',
          '/usr/bin/python3',
          job,
        ],
        { encoding: 'utf8', timeout: 120_000 },
      );
      expect(r.status, r.stderr).toBe(124);
      expect(r.stderr).toMatch(/npurun: hang: rank 3 \(host [^,]+, device 3\) the other 7 ranks wait in all_reduce/);
      expect(r.stderr).toMatch(/^\* rank 3 .*<module> \(hang_job\.py:\d+\)$/m);
      expect(
        r.stderr.split('\n').filter((l) => /^ {2}rank \d .*all_reduce \(distributed_c10d\.py:\d+\)/.test(l)),
      ).toHaveLength(7);
      const dir = join(runs, readdirSync(runs).find((d) => existsSync(join(runs, d, 'run.json'))) as string);
      const record = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as {
        status: string;
        exit_code: number;
        root_cause: string;
        ranks: { label: string; exit: { cause: string } }[];
      };
      expect(record).toMatchObject({ status: 'failed', exit_code: 124, root_cause: '3' });
      expect(record.ranks.find((x) => x.label === '3')?.exit.cause).toBe('hang');
      const events = readFileSync(join(dir, 'events.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { event: string; culprits?: string[] });
      expect(events.find((e) => e.event === 'hang')?.culprits).toEqual(['3']);
      expect(taggedPids(tag)).toEqual([]);
    },
    150_000,
  );
});

import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { readIndex } from '../src/checkpoints/ownership.js';
import { CheckpointWatcher, savingRanks, type CheckpointEvent, type SavingRank } from '../src/checkpoints/watcher.js';
import type { HostSpec } from '../src/plan/types.js';
import { LocalTransport } from '../src/transport/local.js';
import type { DirEntry, HostTransport } from '../src/transport/types.js';

const LOCAL: HostSpec = { name: 'local', address: '127.0.0.1', local: true, devices: 'auto' };

function localRanks(base: string, labels: string[], dir = (l: string) => join(base, `r${l}`, 'ckpt')): SavingRank[] {
  const saving = labels.map((label) => ({ label, rank: Number(label), host: 'local', dir: dir(label) }));
  for (const s of saving) mkdirSync(s.dir, { recursive: true });
  return saving;
}

describe('checkpoint watcher on the local transport (real files)', () => {
  it('saving ranks come from the plan: NPURUN_CKPT_DIR resolved against each rank cwd, with the rank number', () => {
    const ranks = ['0', '1'].map((label) => ({
      label,
      rank: Number(label),
      host: 'local',
      cwd: `/w/r${label}`,
      env: { NPURUN_CKPT_SAVE: label === '0' ? '1' : '0', NPURUN_CKPT_DIR: 'ckpt' },
    }));
    expect(savingRanks({ ranks })).toEqual([{ label: '0', rank: 0, host: 'local', dir: '/w/r0/ckpt' }]);
  });

  it('prunes beyond keep-max, never a file being written, never the newest complete step', async () => {
    const base = mkdtempSync(join(tmpdir(), 'npurun-ckw-'));
    const saving = localRanks(base, ['0', '1']);
    const t = await LocalTransport.connect(LOCAL);
    const events: CheckpointEvent[] = [];
    const w = new CheckpointWatcher(saving, new Map([['local', t]]), {
      keepMax: 2,
      intervalMs: 50,
      onEvent: (e) => events.push(e),
    });
    await w.start();
    const save = (rank: string, epoch: number, size = 1000) =>
      writeFileSync(join(base, `r${rank}`, 'ckpt', `${rank}-${epoch}_${epoch * 10}.ckpt`), Buffer.alloc(size));
    for (const e of [1, 2, 3, 4]) {
      save('0', e);
      save('1', e);
    }
    save('0', 5); // rank 1 has not saved epoch 5 yet: the newest complete step is 4
    save('1', 5, 100); // ...and is writing it right now
    await w.tick();
    await w.tick(); // two listings: sizes settled
    appendFileSync(join(base, 'r1', 'ckpt', '1-5_50.ckpt'), Buffer.alloc(100)); // still growing
    await w.tick();
    const exists = (rank: string, e: number) =>
      existsSync(join(base, `r${rank}`, 'ckpt', `${rank}-${e}_${e * 10}.ckpt`));
    expect([1, 2, 3, 4, 5].map((e) => exists('0', e))).toEqual([false, false, false, true, true]);
    expect([1, 2, 3, 4, 5].map((e) => exists('1', e))).toEqual([false, false, true, true, true]);
    expect(w.latest()).toMatchObject({ epoch: 4, step: 40 });
    expect(events.filter((e) => e.kind === 'ckpt-pruned').length).toBe(5);
    expect(events.some((e) => e.kind === 'ckpt-saved' && e.file.endsWith('1-5_50.ckpt'))).toBe(false);
    await w.stop();
    await t.close();
  });

  it('17.1: a second run in the same folder counts, prunes and offers only its own files; foreign ones are never latest, never pruned', async () => {
    const base = mkdtempSync(join(tmpdir(), 'npurun-ckown-'));
    const saving = localRanks(base, ['0', '1']);
    const path = (rank: string, name: string) => join(base, `r${rank}`, 'ckpt', name);
    // Run A saved steps 40..200 (5 steps per epoch of 40); a user put a pretrained model beside them.
    for (const r of ['0', '1']) {
      for (let e = 1; e <= 5; e++) writeFileSync(path(r, `${r}-${e}_${e * 40}.ckpt`), Buffer.alloc(1000));
      writeFileSync(path(r, 'pretrained-1_1.ckpt'), Buffer.alloc(5000));
    }
    const t = await LocalTransport.connect(LOCAL);
    const events: CheckpointEvent[] = [];
    const indexFile = join(base, 'checkpoints.jsonl');
    const w = new CheckpointWatcher(saving, new Map([['local', t]]), {
      keepMax: 3,
      intervalMs: 50,
      indexFile,
      onEvent: (e) => events.push(e),
    });
    await w.start();
    expect(events.filter((e) => e.kind === 'ckpt-foreign')).toMatchObject([
      { label: '0', files: 6 },
      { label: '1', files: 6 },
    ]);
    // Run B saves steps 20..100 (20 per epoch).
    for (let e = 1; e <= 5; e++) {
      for (const r of ['0', '1']) writeFileSync(path(r, `${r}-${e}_${e * 20}.ckpt`), Buffer.alloc(800));
      await w.tick();
    }
    await w.stop();
    for (const r of ['0', '1']) {
      const left = readdirSync(join(base, `r${r}`, 'ckpt')).sort();
      // A's five files and the pretrained model untouched; B keeps its newest 3 (steps 60, 80, 100).
      expect(left).toEqual(
        [
          `${r}-1_40.ckpt`,
          `${r}-2_80.ckpt`,
          `${r}-3_120.ckpt`,
          `${r}-3_60.ckpt`,
          `${r}-4_160.ckpt`,
          `${r}-4_80.ckpt`,
          `${r}-5_100.ckpt`,
          `${r}-5_200.ckpt`,
          'pretrained-1_1.ckpt',
        ].sort(),
      );
    }
    expect(w.latest()).toMatchObject({ epoch: 5, step: 100 });
    expect(
      events
        .filter((e) => e.kind === 'ckpt-pruned')
        .map((e) => (e as { file: string }).file.split('/').pop())
        .sort(),
    ).toEqual(['0-1_20.ckpt', '0-2_40.ckpt', '1-1_20.ckpt', '1-2_40.ckpt']);
    // The owned set is in the run folder: exactly B's files, with their verdicts.
    const index = readIndex(base);
    expect([...index!.get('0')!.files.keys()].sort()).toEqual(['0-3_60.ckpt', '0-4_80.ckpt', '0-5_100.ckpt']);
    expect(index!.get('0')!.files.get('0-5_100.ckpt')).toMatchObject({ size: 800, verdict: 'complete' });
    expect(index!.get('1')).toMatchObject({ foreign: 6, dir: join(base, 'r1', 'ckpt') });
    await t.close();
  });

  it('a file the run writes again under a foreign name is its own; an untouched same-named file is not', async () => {
    const base = mkdtempSync(join(tmpdir(), 'npurun-ckre-'));
    const saving = localRanks(base, ['0']);
    const p = (n: string) => join(base, 'r0', 'ckpt', n);
    for (let e = 1; e <= 3; e++) writeFileSync(p(`0-${e}_${e * 10}.ckpt`), Buffer.alloc(1000));
    const t = await LocalTransport.connect(LOCAL);
    const w = new CheckpointWatcher(saving, new Map([['local', t]]), { keepMax: 1, intervalMs: 50, onEvent: () => {} });
    await w.start();
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(p('0-1_10.ckpt'), Buffer.alloc(1200)); // the run rewrites epoch 1
    await w.tick();
    await w.stop();
    expect(w.latest()).toMatchObject({ step: 10 });
    expect(readdirSync(join(base, 'r0', 'ckpt')).sort()).toEqual(['0-1_10.ckpt', '0-2_20.ckpt', '0-3_30.ckpt']);
    expect(readFileSync(p('0-1_10.ckpt')).length).toBe(1200);
    await t.close();
  });

  it("a failed rank's very first save counts only with a same-size twin on another rank (or a marker)", async () => {
    const base = mkdtempSync(join(tmpdir(), 'npurun-ckfirst-'));
    const t = await LocalTransport.connect(LOCAL);
    const runOnce = async (sizes: [number, number], failed: string[]) => {
      const dir = mkdtempSync(join(base, 'run-'));
      const saving = localRanks(dir, ['0', '1']);
      const w = new CheckpointWatcher(saving, new Map([['local', t]]), {
        keepMax: 2,
        intervalMs: 50,
        onEvent: () => {},
      });
      await w.start();
      sizes.forEach((size, r) => writeFileSync(join(dir, `r${r}`, 'ckpt', `${r}-1_10.ckpt`), Buffer.alloc(size)));
      await w.tick();
      await w.tick();
      await w.stop(failed);
      return w.latest();
    };
    // Rank 1 died writing its first checkpoint: stable but short, with no history of its own.
    expect(await runOnce([1000, 400], ['1'])).toBeUndefined();
    // Rank 1 failed later: its first save has rank 0's size, so it was whole.
    expect(await runOnce([1000, 1000], ['1'])).toMatchObject({ step: 10 });
    // Sharded sizes, nobody failed: both complete.
    expect(await runOnce([1000, 400], [])).toMatchObject({ step: 10 });
    await t.close();
  });

  it('completion markers: a checkpoint without its .done is never counted; pruning removes the marker too', async () => {
    const base = mkdtempSync(join(tmpdir(), 'npurun-ckdone-'));
    const saving = localRanks(base, ['0']);
    const p = (n: string) => join(base, 'r0', 'ckpt', n);
    const t = await LocalTransport.connect(LOCAL);
    const w = new CheckpointWatcher(saving, new Map([['local', t]]), { keepMax: 1, intervalMs: 50, onEvent: () => {} });
    await w.start();
    for (let e = 1; e <= 3; e++) {
      writeFileSync(p(`0-${e}_${e * 10}.ckpt`), Buffer.alloc(1000));
      if (e < 3) writeFileSync(p(`0-${e}_${e * 10}.ckpt.done`), '');
    }
    await w.tick();
    await w.stop();
    expect(w.latest()).toMatchObject({ step: 20 });
    expect(readdirSync(join(base, 'r0', 'ckpt')).sort()).toEqual(['0-2_20.ckpt', '0-2_20.ckpt.done', '0-3_30.ckpt']);
    await t.close();
  });
});

/** A host whose directories are in memory: listing costs nothing, so the pass's own work is measured. */
class MemoryHost implements Pick<HostTransport, 'listDir' | 'removeFile'> {
  readonly dirs = new Map<string, Map<string, DirEntry>>();
  async listDir(dir: string): Promise<DirEntry[] | null> {
    const d = this.dirs.get(dir);
    return d ? [...d.values()] : null;
  }
  async removeFile(path: string): Promise<void> {
    const cut = path.lastIndexOf('/');
    this.dirs.get(path.slice(0, cut))?.delete(path.slice(cut + 1));
  }
}

describe('checkpoint bookkeeping never starves supervision (18.1)', () => {
  it('8 ranks x 3000 checkpoints: a pass finishes in bounded time and never blocks the event loop for long', async () => {
    const host = new MemoryHost();
    const ranks: SavingRank[] = Array.from({ length: 8 }, (_, r) => ({
      label: String(r),
      rank: r,
      host: 'h',
      dir: `/ck/r${r}`,
    }));
    for (const r of ranks) host.dirs.set(r.dir, new Map());
    const w = new CheckpointWatcher(ranks, new Map([['h', host as unknown as HostTransport]]), {
      keepMax: 5000,
      intervalMs: 60_000,
      onEvent: () => {},
    });
    await w.start(); // empty folders: everything after this is the run's
    for (const r of ranks) {
      const d = host.dirs.get(r.dir) as Map<string, DirEntry>;
      for (let e = 1; e <= 3000; e++)
        d.set(`${r.rank}-${e}_${e * 10}.ckpt`, { name: `${r.rank}-${e}_${e * 10}.ckpt`, size: 1000, mtimeMs: 1 });
    }
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    // A heartbeat-like timer: it must keep firing while passes run.
    let beats = 0;
    const beat = setInterval(() => beats++, 20);
    const t0 = performance.now();
    await w.tick();
    await w.tick();
    const ms = performance.now() - t0;
    clearInterval(beat);
    delay.disable();
    expect(w.latest()).toMatchObject({ step: 30000 });
    const maxDelayMs = delay.max / 1e6;
    // The quadratic, unsliced pass blocked for seconds here; the bound leaves room for a loaded machine.
    expect(maxDelayMs, `max event-loop delay ${maxDelayMs.toFixed(0)} ms over ${ms.toFixed(0)} ms`).toBeLessThan(200);
    expect(ms).toBeLessThan(15_000);
    expect(beats).toBeGreaterThan(ms / 20 / 4);
  }, 60_000);
});

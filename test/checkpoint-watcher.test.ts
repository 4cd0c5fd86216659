import { appendFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointWatcher, savingRanks, type CheckpointEvent } from '../src/checkpoints/watcher.js';
import { LocalTransport } from '../src/transport/local.js';

describe('checkpoint watcher on the local transport', () => {
  it('prunes beyond keep-max, never a file being written, never the newest complete step', async () => {
    const base = mkdtempSync(join(tmpdir(), 'npurun-ckw-'));
    const ranks = ['0', '1'].map((label) => ({ label, host: 'local', cwd: join(base, `r${label}`), env: { NPURUN_CKPT_SAVE: '1', NPURUN_CKPT_DIR: 'ckpt' } }));
    const planRanks = ranks.map((r) => ({ ...r, rank: Number(r.label) })) as unknown as Parameters<typeof savingRanks>[0]['ranks'];
    const saving = savingRanks({ ranks: planRanks });
    expect(saving.map((s) => s.dir)).toEqual([join(base, 'r0', 'ckpt'), join(base, 'r1', 'ckpt')]);
    for (const s of saving) mkdirSync(s.dir, { recursive: true });
    const t = await LocalTransport.connect({ name: 'local', address: '127.0.0.1', local: true, devices: 'auto' });
    const events: CheckpointEvent[] = [];
    const w = new CheckpointWatcher(saving, new Map([['local', t]]), { keepMax: 2, intervalMs: 50, onEvent: (e) => events.push(e) });
    const save = (rank: string, epoch: number, size = 1000) => writeFileSync(join(base, `r${rank}`, 'ckpt', `${rank}-${epoch}_${epoch * 10}.ckpt`), Buffer.alloc(size));
    for (const e of [1, 2, 3, 4]) { save('0', e); save('1', e); }
    save('0', 5); // rank 1 has not saved epoch 5 yet: the newest complete step is 4
    save('1', 5, 100); // ...and is writing it right now
    await w.tick();
    await w.tick(); // two listings: sizes settled
    appendFileSync(join(base, 'r1', 'ckpt', '1-5_50.ckpt'), Buffer.alloc(100)); // still growing
    await w.tick();
    const exists = (rank: string, e: number) => existsSync(join(base, `r${rank}`, 'ckpt', `${rank}-${e}_${e * 10}.ckpt`));
    expect([1, 2, 3, 4, 5].map((e) => exists('0', e))).toEqual([false, false, false, true, true]);
    expect([1, 2, 3, 4, 5].map((e) => exists('1', e))).toEqual([false, false, true, true, true]);
    expect(w.latest()).toMatchObject({ epoch: 4, step: 40 });
    expect(events.filter((e) => e.kind === 'ckpt-pruned').length).toBe(5);
    expect(events.some((e) => e.kind === 'ckpt-saved' && e.file.endsWith('1-5_50.ckpt'))).toBe(false);
    await w.stop();
    await t.close();
  });
});

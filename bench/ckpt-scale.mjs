#!/usr/bin/env node
// Checkpoint bookkeeping at scale, in a fresh process:
//   node bench/ckpt-scale.mjs RANKS FILES_PER_RANK [PASSES]
// Builds a CheckpointWatcher (dist/) over RANKS in-memory directories of FILES_PER_RANK checkpoints
// each (listing costs nothing, so the watcher's own work is measured), runs PASSES passes, and prints
// one JSON line: median pass time, the longest event-loop stall (perf_hooks.monitorEventLoopDelay),
// how many 20 ms timer ticks (a heartbeat stand-in) fired during the passes, and the latest step found.
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { CheckpointWatcher } = await import(join(root, 'dist', 'checkpoints', 'watcher.js'));

const ranks = Number(process.argv[2]);
const files = Number(process.argv[3]);
const passes = Number(process.argv[4] ?? 3);
if (![ranks, files, passes].every((n) => Number.isInteger(n) && n >= 1)) {
  process.stderr.write('usage: node bench/ckpt-scale.mjs RANKS FILES_PER_RANK [PASSES]\n');
  process.exit(2);
}

const dirs = new Map();
const host = {
  async listDir(dir) {
    const d = dirs.get(dir);
    return d ? [...d.values()] : null;
  },
  async removeFile(path) {
    const cut = path.lastIndexOf('/');
    dirs.get(path.slice(0, cut))?.delete(path.slice(cut + 1));
  },
};
const saving = Array.from({ length: ranks }, (_, r) => ({ label: String(r), rank: r, host: 'h', dir: `/ckpt/r${r}` }));
for (const s of saving) dirs.set(s.dir, new Map());
// keep_max above the file count: every pass judges every file, none is removed.
const watcher = new CheckpointWatcher(saving, new Map([['h', host]]), {
  keepMax: files + 1,
  intervalMs: 3_600_000,
  onEvent: () => {},
});
await watcher.start();
for (const s of saving) {
  const d = dirs.get(s.dir);
  for (let e = 1; e <= files; e++)
    d.set(`${s.rank}-${e}_${e * 10}.ckpt`, { name: `${s.rank}-${e}_${e * 10}.ckpt`, size: 1_000_000, mtimeMs: 1 });
}

const delay = monitorEventLoopDelay({ resolution: 5 });
let ticks = 0;
const timer = setInterval(() => ticks++, 20);
delay.enable();
const times = [];
const t0 = performance.now();
for (let i = 0; i < passes + 1; i++) {
  const p0 = performance.now();
  await watcher.tick(); // the first pass only sees the files appear; the rest judge them settled
  if (i > 0) times.push(performance.now() - p0);
}
const total = performance.now() - t0;
delay.disable();
clearInterval(timer);
const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
process.stdout.write(
  JSON.stringify({
    ranks,
    files_per_rank: files,
    passes,
    median_pass_ms: Math.round(median),
    max_event_loop_stall_ms: Math.round(delay.max / 1e6),
    timer_ticks: ticks,
    timer_ticks_expected: Math.floor(total / 20),
    latest_step: watcher.latest()?.step ?? null,
  }) + '\n',
);

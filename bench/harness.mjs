// What every row shares: running a contender and timing it, the tag that finds every process the bench
// started, the launcher's peak RSS, interleaved rounds, and the lists of problems, notes and targets.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const BIN = join(root, 'bin', 'npurun');
const RSS_PROBE = join(root, 'bench', 'rss-probe.mjs');
// Debian's python3-torch lives on the system interpreter; a pyenv python3 on PATH has no torch.
export const PY = '/usr/bin/python3';

export const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);
export const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
/** Test hook for bench-smoke's negative cases (bench/README.md, "Faults"): empty in a real run. */
export const FAULT = process.env.BENCH_FAULT ?? '';

export const work = mkdtempSync(join(tmpdir(), 'npurun-bench-'));
// Every process the bench starts carries this variable, so leftovers are found by it, never by name.
// A row run as its own process (rows-hosts.mjs) inherits the bench's tag.
export const TAG = process.env.BENCH_TAG ?? `${process.pid}-${Date.now()}`;
export const childEnv = { ...process.env, NO_COLOR: '1', BENCH_TAG: TAG };
export const problems = [];
export const notes = [];
/** Issue 17/19 targets: { row, what, value, bound, unit, met }; missed ones fail only with BENCH_STRICT=1. */
export const targets = [];

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const fmt = (s) =>
  s < 0.01 ? `${(s * 1000).toFixed(2)} ms` : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`;
export const mib = (kib) => `${(kib / 1024).toFixed(0)} MiB`;
export const sh = (cmd) => spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
export const have = (cmd) => sh(`command -v ${cmd}`).status === 0;

export function problem(message) {
  problems.push(message);
  process.stderr.write(`\n!!! ${message}\n\n`);
}

export function target(row, what, value, bound, unit) {
  const met = value <= bound;
  targets.push({ row, what, value, bound, unit, met });
  if (!met)
    process.stderr.write(`npurun bench: target missed: ${what}: ${value.toFixed(2)}${unit} (bound ${bound}${unit})\n`);
}

/**
 * Runs a command to completion: wall seconds, stdout and stderr. A different exit code is an error
 * (the row fails; the bench goes on with the next row).
 */
export function run(cmd, args, { expect = 0, env = {}, cwd = work, timeoutSecs = 600, stdout = 'ignore' } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, {
    cwd,
    env: { ...childEnv, ...env },
    stdio: /** @type {import('node:child_process').StdioOptions} */ (['ignore', stdout, 'pipe']),
    maxBuffer: 64 << 20,
    encoding: 'utf8',
    timeout: timeoutSecs * 1000,
    killSignal: 'SIGKILL',
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error && 'code' in r.error && r.error.code === 'ETIMEDOUT')
    throw new Error(`still running after ${timeoutSecs} s, killed [${[cmd, ...args].join(' ').slice(0, 200)}]`);
  if (r.error) throw r.error;
  // Reason first: callers cut long messages.
  if (r.status !== expect)
    throw new Error(
      `exited ${r.status ?? r.signal} (expected ${expect}): ${String(r.stderr).trim().slice(-600)} [${[cmd, ...args].join(' ').slice(0, 200)}]`,
    );
  return { secs, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * run() under GNU time: also the CPU seconds (user + system) of the command and every process it
 * waited for, and the largest peak RSS among them (KiB).
 */
export function runCounted(cmd, args, opts) {
  if (!existsSync('/usr/bin/time')) return { ...run(cmd, args, opts), cpu: NaN, maxRssKiB: NaN };
  const out = join(work, 'time.out');
  const r = run('/usr/bin/time', ['-f', '%U %S %M', '-o', out, cmd, ...args], opts);
  const [user, system, maxRssKiB] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { ...r, cpu: user + system, maxRssKiB };
}

/**
 * `node bin/npurun ...args`, with the launcher's own peak RSS (KiB, getrusage of the node process alone,
 * not its ranks) written by bench/rss-probe.mjs as it exits. `counted`: under GNU time too (run time's cpu).
 * @param {string[]} args
 * @param {Parameters<typeof run>[2] & { counted?: boolean }} [opts]
 * @returns {ReturnType<typeof run> & { rssKiB: number, cpu?: number, maxRssKiB?: number }}
 */
export function runNpurun(args, opts = {}) {
  const rssFile = join(work, `rss-${process.hrtime.bigint()}`);
  const { counted = false, ...rest } = opts;
  const r = (counted ? runCounted : run)('node', ['--import', RSS_PROBE, BIN, ...args], {
    ...rest,
    env: { ...rest.env, BENCH_RSS_FILE: rssFile },
  });
  const rssKiB = existsSync(rssFile) ? Number(readFileSync(rssFile, 'utf8')) : NaN;
  rmSync(rssFile, { force: true });
  return { ...r, rssKiB };
}

/** Live (non-zombie) processes carrying this bench's tag. */
export function taggedProcesses() {
  const found = [];
  for (const d of readdirSync('/proc')) {
    // Not this process, nor the one that started it (bench.mjs, or flock for rows-hosts.mjs).
    if (!/^\d+$/.test(d) || Number(d) === process.pid || Number(d) === process.ppid) continue;
    try {
      if (!readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes(`BENCH_TAG=${TAG}`)) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      if (stat[stat.lastIndexOf(')') + 2] === 'Z') continue;
      found.push({
        pid: Number(d),
        cmdline: readFileSync(`/proc/${d}/cmdline`, 'latin1').replaceAll('\0', ' ').trim(),
      });
    } catch {
      // Gone while we looked, or not ours to read.
    }
  }
  return found;
}

/** Whether a process this one descends from holds an flock on `path` (from /proc/locks). */
export function lockHeldByAncestor(path) {
  if (!existsSync(path)) return false;
  const st = statSync(path);
  const dev = `${((st.dev >> 8) & 0xfff).toString(16).padStart(2, '0')}:${((st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)).toString(16).padStart(2, '0')}`;
  // "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; a waiter's line reads "1: -> FLOCK ...".
  const holders = readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === 'FLOCK' && f[5] === `${dev}:${st.ino}`)
    .map((f) => Number(f[4]));
  for (let pid = process.pid; pid > 1;) {
    if (holders.includes(pid)) return true;
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return false;
}

export function killTagged() {
  for (const p of taggedProcesses()) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Right after a launcher exited nothing it started may still run; anything found is reported and killed. */
export function checkNothingLeft(where) {
  const atExit = taggedProcesses();
  if (atExit.length === 0) return;
  const t0 = Date.now();
  while (Date.now() - t0 < 1000 && taggedProcesses().length > 0) sh('sleep 0.05');
  const later = taggedProcesses();
  problem(
    `${where}: ${atExit.length} process(es) still running when the launcher exited, ${later.length} a second later: ` +
      atExit.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join('; '),
  );
  killTagged();
}

/**
 * npurun's own record of the run in `runsDir` (which holds only this run): run.json must say succeeded
 * (or `status`), exit code `exitCode`, `ranks` ranks on `hosts` hosts, each with the exit it should have.
 * Proves the ranks ran, where the launcher's exit code alone would not.
 */
export function checkRunRecord(where, runsDir, { ranks, hosts = 1, status = 'succeeded', exitCode = 0 }) {
  const dirs = existsSync(runsDir) ? readdirSync(runsDir).filter((d) => existsSync(join(runsDir, d, 'run.json'))) : [];
  if (dirs.length !== 1)
    return problem(`${where}: expected one run folder with a run.json in ${runsDir}, found ${dirs.length}`);
  const rec = JSON.parse(readFileSync(join(runsDir, dirs[0], 'run.json'), 'utf8'));
  const wrong = [];
  if (rec.status !== status) wrong.push(`status ${rec.status}, expected ${status}`);
  if (rec.exit_code !== exitCode) wrong.push(`exit_code ${rec.exit_code}, expected ${exitCode}`);
  const list = Array.isArray(rec.ranks) ? rec.ranks : [];
  if (list.length !== ranks || rec.world_size !== ranks)
    wrong.push(`${list.length} ranks (world_size ${rec.world_size}), expected ${ranks}`);
  const hostCount = new Set(list.map((r) => r.host)).size;
  if (hostCount !== hosts) wrong.push(`ranks on ${hostCount} host(s), expected ${hosts}`);
  if (status === 'succeeded') {
    const bad = list.filter((r) => r.exit?.code !== 0 || r.exit?.cause !== 'exited');
    if (bad.length)
      wrong.push(
        `${bad.length} rank(s) without a clean exit, e.g. rank ${bad[0].label}: ${JSON.stringify(bad[0].exit)}`,
      );
  }
  if (wrong.length) problem(`${where}: run.json of ${dirs[0]}: ${wrong.join('; ')}`);
}

/**
 * Interleaves the contenders round by round (so drift in machine load hits all alike), drops the
 * warm-up rounds and returns each one's median and samples.
 */
export function rounds(contenders, repeat = REPEAT, warmup = WARMUP) {
  const samples = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let i = 0; i < warmup + repeat; i++) {
    for (const c of contenders) {
      const secs = c.measure(i);
      if (i >= warmup) samples[c.name].push(secs);
    }
  }
  return Object.fromEntries(
    contenders.map((c) => [c.name, { secs: median(samples[c.name]), samples: samples[c.name] }]),
  );
}

/** A row of the main table: npurun against each peer, ratio npurun ÷ peer. */
export function compared(name, results, npurunName, detail = {}) {
  const np = results[npurunName];
  const peers = Object.entries(results)
    .filter(([k]) => k !== npurunName)
    .map(([k, v]) => ({ name: k, ...v, ratio: np.secs / v.secs }));
  return { name, npurun: np, peers, ...detail };
}

#!/usr/bin/env node
// npurun benchmarks: every number is a ratio against a floor or a peer measured in the same run on the
// same machine; issue 17/19 targets are reported PASS/FAIL beside them. Output: a markdown table on
// stdout, bench/results.json. `npm run bench` builds first. See bench/README.md for the rows and the
// BENCH_* variables. Exit 1 for a correctness problem (a line lost or damaged, a rank that did not run,
// a process left running, a wrong exit code, a pdsh host that did not answer); a missed target exits 1
// only with BENCH_STRICT=1.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import {
  BIN,
  PY,
  REPEAT,
  WARMUP,
  childEnv,
  fmt,
  killTagged,
  lockHeldByAncestor,
  mib,
  notes,
  problem,
  problems,
  root,
  sh,
  targets,
  taggedProcesses,
  work,
} from './harness.mjs';
import { benchFailure, benchLocalStart, benchLogs, benchMemory } from './rows-local.mjs';
import { hostsUnavailable } from './rows-hosts.mjs';

const SCALE = (process.env.BENCH_SCALE ?? '1,64,512,4096').split(',').map(Number);
const ROWS = (process.env.BENCH_ROWS ?? 'local,failure,logs,memory,ranktable,sshlogs,hosts').split(',');
const OUT = process.env.BENCH_OUT ?? join(root, 'bench', 'results.json');
const STRICT = process.env.BENCH_STRICT === '1';
// The lock every user of the test cluster holds (test/cluster/index.ts takes the same), unless a process
// the bench descends from holds it already (`flock /tmp/npurun-cluster.lock npm run bench`).
const CLUSTER_LOCK = '/tmp/npurun-cluster.lock';
const LOCK_WAIT_SECS = Number(process.env.BENCH_LOCK_WAIT ?? 1800);
const rows = [];

// Rank tables at scale: each size in a fresh node (heap and RSS not inherited from another size).
function benchRankTable() {
  const sizes = SCALE.map((servers) => {
    const r = spawnSync(
      'node',
      ['--expose-gc', join(root, 'bench', 'ranktable-scale.mjs'), String(servers), String(REPEAT)],
      { encoding: 'utf8', env: childEnv },
    );
    if (r.status !== 0) throw new Error(`ranktable-scale.mjs ${servers}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout);
  });
  const perServer = (s) => s.secs / s.servers;
  const one = sizes.find((s) => s.servers === 1);
  const base64 = sizes.find((s) => s.servers === 64);
  return {
    name: `rank table: generate + serialize, parse + validate (schema and semantics), 8 devices per server, median of ${REPEAT}`,
    scale: sizes.map((s) => ({
      ...s,
      perServerVs1: one ? perServer(s) / perServer(one) : null,
      perServerVs64: base64 ? perServer(s) / perServer(base64) : null,
    })),
  };
}

// The cluster rows (hosts, sshlogs) in their own process, holding the cluster lock the whole time (one
// test cluster per machine).
function benchClusterLocked(key) {
  const out = join(work, `${key}-row.json`);
  const argv = ['node', join(root, 'bench', 'rows-hosts.mjs'), out, key, String(process.pid)];
  const locked = lockHeldByAncestor(CLUSTER_LOCK);
  // -E 75: flock's own exit when the wait ran out, told apart from the row's.
  const flock = ['-E', '75', '-w', String(LOCK_WAIT_SECS), CLUSTER_LOCK];
  const r = spawnSync(locked ? argv[0] : 'flock', locked ? argv.slice(1) : [...flock, ...argv], {
    env: childEnv,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (!locked && r.status === 75 && !existsSync(out)) {
    // Someone else's cluster work (or a stale holder) kept the lock: skipped with the reason, not a failure.
    const holder = (sh(`fuser ${CLUSTER_LOCK} 2>/dev/null`).stdout ?? '').trim();
    notes.push(
      `${key} row skipped: ${CLUSTER_LOCK} not free within ${LOCK_WAIT_SECS} s (BENCH_LOCK_WAIT)${holder ? `; held open by pid(s) ${holder}` : ''}`,
    );
    process.stderr.write(
      `npurun bench: ${key} row skipped: the cluster lock was not free within ${LOCK_WAIT_SECS} s\n`,
    );
    return { name: key, skipped: true };
  }
  if (!existsSync(out)) throw new Error(`bench/rows-hosts.mjs exited ${r.status ?? r.signal} without results`);
  const got = JSON.parse(readFileSync(out, 'utf8'));
  problems.push(...got.problems);
  notes.push(...got.notes);
  targets.push(...got.targets);
  if (got.row.error) throw new Error(got.row.error);
  return got.row;
}

function environment() {
  const firstLine = (cmd) => (sh(cmd).stdout ?? '').trim().split('\n')[0];
  const commit = firstLine(`git -C '${root}' rev-parse --short HEAD 2>/dev/null`);
  const dirty = sh(`git -C '${root}' status --porcelain -- src bench 2>/dev/null`).stdout.trim()
    ? ' (+ uncommitted changes)'
    : '';
  return {
    node: process.version,
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown CPU',
    kernel: release(),
    python: firstLine(`${PY} -c 'import platform; print(platform.python_version())' 2>/dev/null`) || 'none',
    torch: torch ? torch.version : 'not installed',
    pdsh: firstLine('pdsh -V 2>&1') || 'not installed',
    npurun: `${firstLine(`node '${BIN}' --version 2>/dev/null`) || 'npurun ?'} at ${commit || '?'}${dirty}`,
    commit,
    busyAtStart: cpuBusyFraction(),
    repeat: REPEAT,
    warmup: WARMUP,
  };
}

/** Share of all CPUs busy over one second, from /proc/stat (the load average still counts the build). */
function cpuBusyFraction() {
  const sample = () => {
    const [, ...fields] = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).map(Number);
    const idle = fields[3] + fields[4];
    return { idle, total: fields.reduce((a, b) => a + b, 0) };
  };
  const a = sample();
  sh('sleep 1');
  const b = sample();
  return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
}

function probeTorch() {
  const r = spawnSync(
    PY,
    [
      '-c',
      "import torch; from torch.distributed.run import get_args_parser as p; print(torch.__version__, p().get_default('monitor_interval'))",
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return undefined;
  const [version, monitorInterval] = r.stdout.trim().split(' ');
  return { version, monitorInterval };
}

// Ctrl-C: the children got it too; still make sure nothing of ours survives.
process.on('SIGINT', () => {
  killTagged();
  rmSync(work, { recursive: true, force: true });
  process.exit(130);
});

const torch = process.env.BENCH_TORCH === '0' ? undefined : probeTorch();
const env = environment();
process.stderr.write(
  `npurun bench: node ${env.node}, ${env.cores} cores, rows ${ROWS.join(',')}, median of ${REPEAT} after ${WARMUP} warm-up round(s)\n`,
);
if (torch && ROWS.some((r) => ['local', 'failure', 'logs'].includes(r)))
  notes.push(
    "torchrun is Debian's python3-torch run through bench/torchrun_patched.py: as shipped it crashes on Python 3.11 in Std.from_str on every launch; the wrapper fixes only that",
  );
else if (!torch)
  notes.push(`torchrun columns skipped: ${process.env.BENCH_TORCH === '0' ? 'BENCH_TORCH=0' : `no torch for ${PY}`}`);
if (env.busyAtStart > 0.2)
  notes.push(
    `something else was using ${(env.busyAtStart * 100).toFixed(0)}% of the CPUs when the bench started: numbers are noisier than usual`,
  );

const benches = {
  local: () => benchLocalStart(torch),
  failure: () => benchFailure(torch),
  logs: () => benchLogs(torch),
  memory: benchMemory,
  ranktable: benchRankTable,
  sshlogs: () => benchClusterLocked('sshlogs'),
  hosts: () => benchClusterLocked('hosts'),
};
for (const key of ROWS) {
  const bench = benches[key];
  if (!bench) throw new Error(`BENCH_ROWS: unknown row "${key}" (known: ${Object.keys(benches).join(', ')})`);
  const why = key === 'hosts' || key === 'sshlogs' ? hostsUnavailable() : undefined;
  if (why) {
    notes.push(`${key} row skipped: ${why}`);
    process.stderr.write(`npurun bench: ${key} row skipped: ${why}\n`);
    continue;
  }
  process.stderr.write(`npurun bench: ${key}...\n`);
  const t0 = Date.now();
  try {
    rows.push({ key, ...bench(), benchSeconds: (Date.now() - t0) / 1000 });
  } catch (e) {
    problem(`${key} row failed: ${e.message}`);
    rows.push({ key, name: key, error: e.message });
  }
  process.stderr.write(`npurun bench: ${key} took ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
}

// Final ps check: nothing the bench started may still run.
const left = taggedProcesses();
if (left.length > 0) {
  problem(
    `after the bench: ${left.length} process(es) still running: ${left.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join('; ')}`,
  );
  killTagged();
} else {
  notes.push('ps check after the bench: no process started by the bench is still running');
}

const lines = [
  `npurun benchmarks: node ${env.node}, ${env.cores} cores (${env.cpu}), Linux ${env.kernel}, Python ${env.python}, torch ${env.torch}, ${env.pdsh}; ${env.npurun}; median of ${REPEAT} after ${WARMUP} warm-up round(s), contenders interleaved`,
  '',
  '| measurement | npurun | compared with | its time | npurun ÷ it |',
  '|---|---|---|---|---|',
];
for (const r of rows.filter((x) => x.error || x.peers)) {
  if (r.error) lines.push(`| ${r.name} | FAILED | | | ${r.error.slice(0, 120)} |`);
  else if (r.peers.length === 0) lines.push(`| ${r.name} | ${fmt(r.npurun.secs)} | (no peer on this machine) | | |`);
  else
    for (const p of r.peers)
      lines.push(`| ${r.name} | ${fmt(r.npurun.secs)} | ${p.name} | ${fmt(p.secs)} | ${p.ratio.toFixed(2)} |`);
}
for (const r of rows.filter((x) => x.hosts)) {
  lines.push(
    '',
    `${r.name}:`,
    '',
    '| hosts × 8 ranks | login shell | npurun | pdsh | npurun ÷ pdsh | npurun per host | launcher peak RSS (npurun / pdsh) | rounds |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const p of r.hosts) {
    if (!p.npurun || !p.pdsh)
      lines.push(
        `| ${p.hosts} | ${p.login} | ${p.npurun ? fmt(p.npurun.secs) : 'FAILED'} | ${p.pdsh ? fmt(p.pdsh.secs) : 'FAILED'} | | | | ${(p.errors ?? []).join('; ').slice(0, 120)} |`,
      );
    else
      lines.push(
        `| ${p.hosts} | ${p.login} | ${fmt(p.npurun.secs)} | ${fmt(p.pdsh.secs)} | ${(p.npurun.secs / p.pdsh.secs).toFixed(2)} | ${fmt(p.npurun.secs / p.hosts)} | ${mib(p.npurun.rssKiB)} / ${mib(p.pdsh.rssKiB)} | ${p.npurun.samples.length} |`,
      );
  }
}
for (const r of rows.filter((x) => x.memory)) {
  lines.push('', `${r.name}:`, '', '| output | wall time | launcher peak RSS |', '|---|---|---|');
  for (const m of r.memory)
    lines.push(
      `| ${m.what} | ${m.error ? 'FAILED' : fmt(m.secs)} | ${m.error ? m.error.slice(0, 120) : mib(m.launcherRssKiB)} |`,
    );
}
for (const r of rows.filter((x) => x.scale)) {
  lines.push('', `${r.name}:`, '');
  lines.push(
    '| servers | ranks | generate | validate | total | per server ÷ at 1 server | per server ÷ at 64 | heap held | RSS growth | JSON |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  const ratio = (x) => (x == null ? '' : x.toFixed(2));
  for (const s of r.scale) {
    lines.push(
      `| ${s.servers} | ${s.ranks} | ${fmt(s.generateSecs)} | ${fmt(s.validateSecs)} | ${fmt(s.secs)} | ${ratio(s.perServerVs1)} | ${ratio(s.perServerVs64)} | ${s.heapMiB.toFixed(1)} MiB | ${s.rssGrowthMiB.toFixed(1)} MiB | ${(s.bytes / 1024).toFixed(0)} KiB |`,
    );
  }
}
if (targets.length) {
  lines.push(
    '',
    `Targets (issues 17.11 and 19; a miss fails the bench only with BENCH_STRICT=1${STRICT ? ', set' : ''}):`,
    '',
    '| target | measured | bound | |',
    '|---|---|---|---|',
  );
  for (const t of targets)
    lines.push(
      `| ${t.what} | ${Number.isFinite(t.value) ? t.value.toFixed(2) : 'n/a'}${t.unit} | ${t.bound}${t.unit} | ${t.met ? 'PASS' : 'FAIL'} |`,
    );
}
const remarks = rows.filter((r) => r.remark).map((r) => `${r.key}: ${r.remark}`);
if (remarks.length || notes.length) lines.push('', ...[...remarks, ...notes].map((n) => `- ${n}`));
if (problems.length) lines.push('', '**PROBLEMS (correctness, not speed):**', '', ...problems.map((p) => `- ${p}`));
process.stdout.write(lines.join('\n') + '\n');
writeFileSync(OUT, JSON.stringify({ environment: env, rows, targets, notes, problems }, null, 2) + '\n');
// The summary kept in git beside bench/README.md (results.json, with every sample, is not committed).
const SUMMARY =
  process.env.BENCH_SUMMARY ??
  (process.env.BENCH_OUT
    ? ''
    : join(root, 'bench', `results-${new Date().toISOString().slice(0, 10)}-${env.commit || 'unknown'}.md`));
if (SUMMARY)
  writeFileSync(
    SUMMARY,
    `# npurun bench, ${new Date().toISOString().slice(0, 16)}Z\n\n\`BENCH_ROWS=${ROWS.join(',')}\`${process.env.BENCH_HOSTS ? ` \`BENCH_HOSTS=${process.env.BENCH_HOSTS}\`` : ''}\n\n${lines.join('\n')}\n`,
  );
rmSync(work, { recursive: true, force: true });
if (problems.length || (STRICT && targets.some((t) => !t.met))) process.exitCode = 1;

#!/usr/bin/env node
// npurun benchmarks: every number is a ratio against a floor or a peer measured in the same run on
// the same machine, never a pass/fail threshold. Results: a markdown table on stdout and
// bench/results.json. Run with `npm run bench` (builds first). Needs python3; the torchrun rows need
// Debian's python3-torch (/usr/bin/python3); the fan-out row needs root, openssh-server and pdsh.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'bin', 'npurun');
const TORCHRUN = ['/usr/bin/python3', join(root, 'bench', 'torchrun_patched.py')];
const CLUSTER = join(root, 'test', 'sim', 'cluster.sh');
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const work = mkdtempSync(join(tmpdir(), 'npurun-bench-'));
const rows = [];
const notes = [];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (s) => (s < 0.01 ? `${(s * 1000).toFixed(2)} ms` : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const haveTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

/** Runs a command to completion; returns wall seconds (throws on a non-zero exit unless allowed). */
function timed(cmd, args, opts = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: opts.stdio ?? 'ignore', env: { ...process.env, NO_COLOR: '1', ...(opts.env ?? {}) }, cwd: opts.cwd ?? work, shell: false });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr ?? ''}`);
  return { secs, status: r.status };
}

function repeat(fn) {
  const xs = [];
  for (let i = 0; i < REPEAT; i++) xs.push(fn(i));
  return median(xs);
}

function row(name, npurun, peers) {
  rows.push({ name, npurun, peers });
}

const npurunLocal = (extra, cmd) => [BIN, 'launch', '--simulate', '8', '--profile', 'torch', '--console', 'none', '--run-dir', join(work, 'runs'), ...extra, '--', ...cmd];

// 1. Local start: 8 no-op ranks.
{
  const floor = repeat(() => timed('sh', ['-c', 'for i in 1 2 3 4 5 6 7 8; do true & done; wait']).secs);
  const np = repeat(() => timed('node', npurunLocal([], ['true'])).secs);
  const peers = [{ name: 'shell loop (floor)', secs: floor }];
  if (haveTorch) peers.push({ name: 'torchrun', secs: repeat(() => timed(TORCHRUN[0], [...TORCHRUN.slice(1), '--standalone', '--nproc_per_node', '8', '--no_python', 'true']).secs) });
  row('local start, 8 no-op ranks (wall time of the launcher)', np, peers);
}

// 2. Failure to all-stopped: rank 3 exits 1 after 1 s, the others sleep 60.
{
  const failer = join(work, 'fail.py');
  writeFileSync(failer, 'import os, sys, time\nif os.environ["RANK"] == "3":\n    time.sleep(1)\n    open(os.environ["STAMP"], "w").write(repr(time.time()))\n    sys.exit(1)\ntime.sleep(60)\n');
  const measure = (argv) => (i) => {
    const stamp = join(work, `stamp-${process.hrtime.bigint()}-${i}`);
    timed(argv[0], argv.slice(1), { env: { STAMP: stamp }, allowFail: true });
    const end = Date.now() / 1000;
    return end - Number(readFileSync(stamp, 'utf8'));
  };
  const np = repeat(measure(['node', ...npurunLocal(['--grace', '10'], ['/usr/bin/python3', failer])]));
  const peers = [];
  if (haveTorch) peers.push({ name: 'torchrun', secs: repeat(measure([...TORCHRUN, '--standalone', '--nproc_per_node', '8', failer])) });
  row('failure: one rank of 8 exits, time until the launcher has stopped all and exited', np, peers);
}

// 3. Log throughput: 8 ranks x 200k lines.
{
  const n = Number(process.env.BENCH_LINES ?? 200_000);
  const writer = join(work, 'writer.py');
  writeFileSync(writer, `import os, sys\nr = os.environ.get("RANK", os.environ.get("R", "0"))\nw = sys.stdout.write\nfor i in range(${n}):\n    w("rank %s line %d some training log text loss:1.234567\\n" % (r, i))\n`);
  const floor = repeat((i) => {
    const d = join(work, `floor-${i}`);
    return timed('sh', ['-c', `mkdir -p ${d}; for r in 0 1 2 3 4 5 6 7; do R=$r /usr/bin/python3 ${writer} > ${d}/rank$r.log & done; wait`]).secs;
  });
  let checked = 'not checked';
  const np = repeat(() => {
    const runs = join(work, `tput-runs-${process.hrtime.bigint()}`);
    const t = timed('node', [BIN, 'launch', '--simulate', '8', '--profile', 'torch', '--console', 'none', '--run-dir', runs, '--', '/usr/bin/python3', writer]).secs;
    const dir = join(runs, readdirSync(runs)[0]);
    const merged = readFileSync(join(dir, 'merged.log'), 'utf8').split('\n').filter(Boolean).length;
    const perRank = [0, 1, 2, 3, 4, 5, 6, 7].map((r) => readFileSync(join(dir, 'logs', `rank-${r}.log`), 'utf8').split('\n').filter(Boolean).length);
    checked = merged === 8 * n && perRank.every((c) => c === n) ? `all ${8 * n} lines in merged.log and per-rank logs` : `MISMATCH: merged ${merged}, per rank ${perRank.join(',')}`;
    rmSync(runs, { recursive: true, force: true });
    return t;
  });
  notes.push(`log throughput check: ${checked}`);
  const peers = [{ name: 'ranks writing straight to files (floor)', secs: floor }];
  if (haveTorch) {
    peers.push({
      name: 'torchrun --tee 3 --log_dir',
      secs: repeat((i) => timed(TORCHRUN[0], [...TORCHRUN.slice(1), '--standalone', '--nproc_per_node', '8', '--tee', '3', '--log_dir', join(work, `tr-${i}`), writer], { stdio: ['ignore', 'ignore', 'ignore'] }).secs),
    });
  }
  row(`log throughput, 8 ranks x ${n} lines, everything saved (wall time)`, np, peers);
}

// 4. Rank table generate + validate at scale (in-process, time and memory).
{
  const { generateRankTable, serializeRankTable } = await import(join(root, 'dist', 'ranktable', 'generate.js'));
  const { validateRankTable } = await import(join(root, 'dist', 'ranktable', 'validate.js'));
  const scale = [];
  // Warm-up: the first validation compiles the JSON schema; that one-time cost is not per server.
  validateRankTable(JSON.parse(serializeRankTable(generateRankTable([{ serverId: '10.0.0.1', devices: [{ deviceId: 0, deviceIp: '172.16.0.1' }] }]))));
  for (const servers of [1, 64, 512, 4096]) {
    const input = Array.from({ length: servers }, (_, s) => ({
      serverId: `10.${(s >> 8) & 255}.${s & 255}.1`,
      devices: Array.from({ length: 8 }, (_, d) => ({ deviceId: d, deviceIp: `172.${16 + d}.${(s >> 8) & 255}.${s & 255}` })),
    }));
    global.gc?.();
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = process.hrtime.bigint();
    const table = generateRankTable(input);
    const text = serializeRankTable(table);
    const v = validateRankTable(JSON.parse(text));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const heapMiB = (process.memoryUsage().heapUsed - heap0) / 2 ** 20;
    if (v.problems.length) throw new Error(`generated table invalid: ${v.problems[0].message}`);
    scale.push({ servers, ranks: servers * 8, secs, heapMiB, bytes: text.length });
  }
  const base = scale[1];
  rows.push({
    name: 'rank table generate + serialize + validate (after one warm-up)',
    table: scale.map((s) => ({ ...s, perServerVs64: s.secs / s.servers / (base.secs / base.servers) })),
  });
}

// 5. Fan-out over SSH: 16 namespaced hosts x 8 no-op ranks, npurun vs pdsh (one command per host).
{
  const why = process.getuid?.() !== 0 ? 'needs root' : !existsSync(CLUSTER) ? 'no test/sim/cluster.sh' : spawnSync('sh', ['-c', 'command -v pdsh && test -x /usr/sbin/sshd'], { stdio: 'ignore' }).status !== 0 ? 'needs pdsh and openssh-server' : undefined;
  if (why) {
    notes.push(`fan-out row skipped: ${why}`);
  } else {
    const dir = execFileSync(CLUSTER, ['up', '16'], { encoding: 'utf8' }).trim().split('\n').pop();
    try {
      const info = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8'));
      const hostsFile = join(work, 'hosts16.yaml');
      writeFileSync(hostsFile, ['defaults:', '  user: root', `  identity_file: ${info.key}`, `  known_hosts: ${info.known_hosts}`, 'hosts:', ...info.hosts.map((h) => `  - { name: ${h.name}, address: ${h.address} }`)].join('\n') + '\n');
      const np = repeat(() => timed('node', [BIN, 'launch', '--hosts', hostsFile, '--profile', 'torch', '--console', 'none', '--run-dir', join(work, 'runs'), '--workdir', '/tmp/w', '--', 'true']).secs);
      const pdsh = repeat(() =>
        timed('pdsh', ['-R', 'ssh', '-f', '32', '-w', 'h[1-16]', 'for i in 1 2 3 4 5 6 7 8; do true & done; wait'], {
          env: { PDSH_SSH_ARGS_APPEND: `-F ${info.ssh_config} -o BatchMode=yes` },
        }).secs,
      );
      row('fan-out: 16 hosts x 8 no-op ranks over SSH (npurun: preflight, rank table, guards, logs)', np, [{ name: 'pdsh, one command per host', secs: pdsh }]);
    } finally {
      execFileSync(CLUSTER, ['down']);
    }
  }
}

// Report.
const lines = [`npurun benchmarks — node ${process.version}, ${cpus().length} cores, median of ${REPEAT}`, ''];
lines.push('| measurement | npurun | peer / floor | peer time | npurun ÷ peer |', '|---|---|---|---|---|');
for (const r of rows.filter((x) => x.peers)) {
  if (r.peers.length === 0) lines.push(`| ${r.name} | ${fmt(r.npurun)} | (no peer on this machine) | | |`);
  for (const p of r.peers) lines.push(`| ${r.name} | ${fmt(r.npurun)} | ${p.name} | ${fmt(p.secs)} | ${(r.npurun / p.secs).toFixed(2)} |`);
}
for (const r of rows.filter((x) => x.table)) {
  lines.push('', `${r.name}:`, '', '| servers | ranks | time | heap | JSON size | cost per server, ÷ that at 64 servers |', '|---|---|---|---|---|---|');
  for (const s of r.table) lines.push(`| ${s.servers} | ${s.ranks} | ${fmt(s.secs)} | ${s.heapMiB.toFixed(1)} MiB | ${(s.bytes / 1024).toFixed(0)} KiB | ${s.perServerVs64.toFixed(2)} |`);
}
if (notes.length) lines.push('', ...notes.map((n) => `- ${n}`));
process.stdout.write(lines.join('\n') + '\n');
writeFileSync(join(root, 'bench', 'results.json'), JSON.stringify({ node: process.version, cores: cpus().length, repeat: REPEAT, rows, notes }, null, 2) + '\n');
rmSync(work, { recursive: true, force: true });

#!/usr/bin/env node
// npurun benchmarks: every number is a ratio against a floor or a peer measured in the same run on the
// same machine, never a pass/fail threshold. Output: a markdown table on stdout, bench/results.json.
// `npm run bench` builds first. See bench/README.md for the rows and the BENCH_* variables.
// Exit code 1 only for a correctness problem (lost log lines, a process left running, a wrong exit code).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'bin', 'npurun');
// Debian's python3-torch lives on the system interpreter; a pyenv python3 on PATH has no torch.
const PY = '/usr/bin/python3';
const TORCHRUN = [PY, join(root, 'bench', 'torchrun_patched.py')];
const CLUSTER = join(root, 'test', 'sim', 'cluster.sh');
const CLUSTER_DIR = '/run/npurun-sim';

const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const LINES = Number(process.env.BENCH_LINES ?? 200_000);
const SCALE = (process.env.BENCH_SCALE ?? '1,64,512,4096').split(',').map(Number);
const ROWS = (process.env.BENCH_ROWS ?? 'local,failure,logs,ranktable,fanout').split(',');
const OUT = process.env.BENCH_OUT ?? join(root, 'bench', 'results.json');
const FANOUT_HOSTS = 16;

const work = mkdtempSync(join(tmpdir(), 'npurun-bench-'));
// Every process the bench starts carries this variable, so leftovers are found by it, never by name.
const TAG = `${process.pid}-${Date.now()}`;
const childEnv = { ...process.env, NO_COLOR: '1', BENCH_TAG: TAG };
const rows = [];
const notes = [];
const problems = [];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (s) => (s < 0.01 ? `${(s * 1000).toFixed(2)} ms` : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const sh = (cmd) => spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
const have = (cmd) => sh(`command -v ${cmd}`).status === 0;

function problem(message) {
  problems.push(message);
  process.stderr.write(`\n!!! ${message}\n\n`);
}

/** Runs a command to completion and returns its wall seconds; a different exit code is an error. */
function run(cmd, args, { expect = 0, env = {}, cwd = work } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, env: { ...childEnv, ...env }, stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 << 20 });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw r.error;
  if (r.status !== expect) throw new Error(`${[cmd, ...args].join(' ')} exited ${r.status ?? r.signal} (expected ${expect}): ${String(r.stderr).trim().slice(-600)}`);
  return secs;
}

/**
 * run() under GNU time: also the CPU seconds (user + system) of the command and every process it
 * waited for, which on 2 cores says more about the work done than wall time alone.
 */
function runCounted(cpuSamples, cmd, args, opts) {
  if (!existsSync('/usr/bin/time')) return run(cmd, args, opts);
  const out = join(work, 'time.out');
  const secs = run('/usr/bin/time', ['-f', '%U %S', '-o', out, cmd, ...args], opts);
  const [user, system] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  cpuSamples.push(user + system);
  return secs;
}

/** Live (non-zombie) processes carrying this bench's tag. */
function taggedProcesses() {
  const found = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes(`BENCH_TAG=${TAG}`)) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      if (stat[stat.lastIndexOf(')') + 2] === 'Z') continue;
      found.push({ pid: Number(d), cmdline: readFileSync(`/proc/${d}/cmdline`, 'latin1').replaceAll('\0', ' ').trim() });
    } catch {
      // Gone while we looked, or not ours to read.
    }
  }
  return found;
}

/** Right after a launcher exited nothing it started may still run; anything found is reported and killed. */
function checkNothingLeft(where) {
  const atExit = taggedProcesses();
  if (atExit.length === 0) return;
  const t0 = Date.now();
  while (Date.now() - t0 < 1000 && taggedProcesses().length > 0) sh('sleep 0.05');
  const later = taggedProcesses();
  problem(
    `${where}: ${atExit.length} process(es) still running when the launcher exited, ${later.length} a second later: ` +
      atExit.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join('; '),
  );
  for (const p of later) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/**
 * Interleaves the contenders round by round (so drift in machine load hits all alike), drops the
 * warm-up rounds and returns each one's median and samples.
 */
function rounds(contenders) {
  const samples = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let i = 0; i < WARMUP + REPEAT; i++) {
    for (const c of contenders) {
      const secs = c.measure(i);
      if (i >= WARMUP) samples[c.name].push(secs);
    }
  }
  return Object.fromEntries(contenders.map((c) => [c.name, { secs: median(samples[c.name]), samples: samples[c.name] }]));
}

/** A row of the main table: npurun against each peer, ratio npurun ÷ peer. */
function compared(name, results, npurunName, detail = {}) {
  const np = results[npurunName];
  const peers = Object.entries(results)
    .filter(([k]) => k !== npurunName)
    .map(([k, v]) => ({ name: k, ...v, ratio: np.secs / v.secs }));
  return { name, npurun: np, peers, ...detail };
}

const npurunLaunch = (runDir, extra, cmd) => [
  BIN, 'launch', '--simulate', '8', '--profile', 'torch', '--console', 'none', '--run-dir', runDir,
  // Keep the pid-file folders inside the bench's scratch space rather than in /tmp/npurun.
  '--remote-dir', join(work, 'remote', '{run_id}'), ...extra, '--', ...cmd,
];

function countNewlines(file) {
  const buf = readFileSync(file);
  let n = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

function filesNamed(dir, name) {
  return readdirSync(dir, { recursive: true }).filter((p) => p.endsWith(name)).map((p) => join(dir, p));
}

/** torchrun's flags as Debian's 1.13 spells them (no dashed aliases yet). */
const torchrun = (extra, cmd) => [...TORCHRUN.slice(1), '--standalone', '--nproc_per_node', '8', ...extra, ...cmd];

// 1. Local start: 8 no-op ranks, wall time of the launcher.
function benchLocalStart() {
  const runs = join(work, 'start-runs');
  const contenders = [
    { name: 'npurun', measure: () => { const s = run('node', npurunLaunch(runs, [], ['true'])); checkNothingLeft('local start, npurun'); return s; } },
    { name: 'shell loop: 8 × `true &`, wait (floor)', measure: () => run('sh', ['-c', 'for i in 1 2 3 4 5 6 7 8; do true & done; wait']) },
  ];
  if (torch) {
    // Its agent looks at the workers every monitor interval, so the default interval also bounds how soon it sees them finish.
    for (const interval of [torch.monitorInterval, '0.1']) {
      const tuned = interval === torch.monitorInterval ? ' (default)' : '';
      contenders.push({
        name: `torchrun --monitor_interval ${interval}${tuned} --no_python true`,
        measure: () => { const s = run(PY, torchrun(['--monitor_interval', interval, '--no_python'], ['true'])); checkNothingLeft('local start, torchrun'); return s; },
      });
    }
  }
  const r = rounds(contenders);
  rmSync(runs, { recursive: true, force: true });
  // Context, not contenders: what the interpreters alone cost before either launcher does anything.
  const contextRuns = Math.min(REPEAT, 3);
  const nodeAlone = median(Array.from({ length: contextRuns }, () => run('node', [BIN, '--version'])));
  const torchImport = torch ? median(Array.from({ length: contextRuns }, () => run(PY, ['-c', 'import torch.distributed.run']))) : undefined;
  return compared('local start, 8 no-op ranks (wall time of the launcher)', r, 'npurun', {
    remark: `of which starting the interpreter and loading the code: \`npurun --version\` ${fmt(nodeAlone)}` + (torchImport ? `, \`import torch.distributed.run\` ${fmt(torchImport)}` : ''),
    nodeAloneSecs: nodeAlone,
    torchImportSecs: torchImport,
  });
}

// 2. Failure to all-stopped: rank 3 exits 1 after 1 s, the others sleep 60.
function benchFailure() {
  const failer = join(work, 'fail.py');
  writeFileSync(
    failer,
    [
      'import os, sys, time',
      'if os.environ["RANK"] == "3":',
      '    time.sleep(1)',
      '    with open(os.environ["STAMP"], "w") as f:',
      '        f.write(repr(time.time()))',
      '    sys.exit(1)',
      'time.sleep(60)',
      '',
    ].join('\n'),
  );
  const runs = join(work, 'fail-runs');
  // From rank 3's last act to the launcher's exit, both clocks being this machine's wall clock.
  const measure = (label, cmd, args) => (i) => {
    const stamp = join(work, `stamp-${label}-${i}`);
    run(cmd, args, { expect: 1, env: { STAMP: stamp } });
    const end = Date.now() / 1000;
    checkNothingLeft(`failure, ${label}`);
    if (!existsSync(stamp)) throw new Error(`${label}: rank 3 never wrote its exit time (did another rank fail first?)`);
    return end - Number(readFileSync(stamp, 'utf8'));
  };
  const contenders = [{ name: 'npurun', measure: measure('npurun', 'node', npurunLaunch(runs, [], [PY, failer])) }];
  if (torch) {
    contenders.push({ name: `torchrun --monitor_interval ${torch.monitorInterval} (default)`, measure: measure('torchrun', PY, torchrun([], [failer])) });
    contenders.push({ name: 'torchrun --monitor_interval 0.1', measure: measure('torchrun-0.1', PY, torchrun(['--monitor_interval', '0.1'], [failer])) });
  }
  const r = rounds(contenders);
  rmSync(runs, { recursive: true, force: true });
  return compared('failure: rank 3 of 8 exits 1, the others sleep; its exit until the launcher has stopped all and exited', r, 'npurun', {
    remark: 'both exit 1 (the failed rank\'s code); checked right at exit that no rank is still running',
  });
}

// 3. Log throughput: 8 ranks × LINES lines, everything saved.
function benchLogs() {
  const writer = join(work, 'writer.py');
  writeFileSync(
    writer,
    `import os, sys\nr = os.environ.get("RANK", "0")\nw = sys.stdout.write\nfor i in range(${LINES}):\n    w("rank %s line %d some training log text loss:1.234567\\n" % (r, i))\n`,
  );
  const expectCounts = (label, files, perFile) => {
    const counts = files.map(countNewlines);
    if (counts.length === 0 || counts.some((c) => c !== perFile)) {
      problem(`log throughput, ${label}: expected ${perFile} lines in each of ${files.length || 'the'} file(s), found ${counts.join(', ') || 'no files'}`);
      return false;
    }
    return true;
  };
  const bytes = { total: 0 };
  const checks = new Map();
  const cpu = { npurun: [], floor: [] };
  const contenders = [
    {
      name: 'npurun',
      measure: (i) => {
        const runs = join(work, `logs-runs-${i}`);
        const s = runCounted(cpu.npurun, 'node', npurunLaunch(runs, [], [PY, writer]));
        checkNothingLeft('log throughput, npurun');
        const dir = join(runs, readdirSync(runs)[0]);
        const perRank = [0, 1, 2, 3, 4, 5, 6, 7].map((r) => join(dir, 'logs', `rank-${r}.log`));
        const ok = expectCounts('npurun per-rank logs', perRank, LINES) && expectCounts('npurun merged.log', [join(dir, 'merged.log')], 8 * LINES);
        bytes.total = perRank.reduce((n, f) => n + statSync(f).size, 0);
        checks.set('npurun', ok);
        rmSync(runs, { recursive: true, force: true });
        return s;
      },
    },
    {
      name: 'ranks writing straight to files (floor)',
      measure: (i) => {
        const d = join(work, `logs-floor-${i}`);
        mkdirSync(d);
        const s = runCounted(cpu.floor, 'sh', ['-c', `for r in 0 1 2 3 4 5 6 7; do RANK=$r ${PY} ${writer} > ${d}/rank$r.log & done; wait`]);
        checks.set('floor', expectCounts('floor', readdirSync(d).map((f) => join(d, f)), LINES));
        rmSync(d, { recursive: true, force: true });
        return s;
      },
    },
  ];
  if (torch) {
    for (const mode of ['redirects', 'tee']) {
      contenders.push({
        // At the default 5 s monitor interval torchrun's time would be its polling, not its logging.
        name: `torchrun --monitor_interval 0.1 --${mode} 3 --log_dir` + (mode === 'tee' ? ' (files + prefixed console, to /dev/null)' : ' (files only)'),
        measure: (i) => {
          const d = join(work, `logs-torch-${mode}-${i}`);
          const s = runCounted((cpu[`torchrun --${mode}`] = cpu[`torchrun --${mode}`] ?? []), PY, torchrun(['--monitor_interval', '0.1', `--${mode}`, '3', '--log_dir', d], [writer]));
          checkNothingLeft(`log throughput, torchrun --${mode}`);
          checks.set(`torchrun --${mode}`, expectCounts(`torchrun --${mode} stdout.log`, filesNamed(d, 'stdout.log'), LINES));
          rmSync(d, { recursive: true, force: true });
          return s;
        },
      });
    }
  }
  const r = rounds(contenders);
  const verified = [...checks].map(([k, ok]) => `${k}: ${ok ? 'every line saved' : 'LINES LOST'}`).join('; ');
  notes.push(`log throughput, line counts (${LINES} per rank; npurun: per-rank logs and merged.log): ${verified}`);
  return compared(`log throughput, 8 ranks × ${LINES} lines, everything saved (wall time)`, r, 'npurun', {
    mibPerSecond: bytes.total / 2 ** 20 / r.npurun.secs,
    cpuSeconds: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, { median: median(v.slice(WARMUP)), samples: v.slice(WARMUP) }])),
    remark:
      `npurun saves each line twice (per-rank log and merged.log): ${(bytes.total / 2 ** 20).toFixed(0)} MiB of rank output at ${(bytes.total / 2 ** 20 / r.npurun.secs).toFixed(0)} MiB/s; ` +
      `CPU seconds (user + system, launcher and ranks): ${Object.entries(cpu).filter(([, v]) => v.length > WARMUP).map(([k, v]) => `${k} ${median(v.slice(WARMUP)).toFixed(2)}`).join(', ')}`,
  });
}

// 4. Rank tables at scale: each size in a fresh node (heap and RSS not inherited from another size).
function benchRankTable() {
  const sizes = SCALE.map((servers) => {
    const r = spawnSync('node', ['--expose-gc', join(root, 'bench', 'ranktable-scale.mjs'), String(servers), String(REPEAT)], { encoding: 'utf8', env: childEnv });
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

/** Why the fan-out row cannot run here, or undefined. */
function fanOutUnavailable() {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (!existsSync(CLUSTER)) return 'no test/sim/cluster.sh';
  if (!existsSync('/usr/sbin/sshd')) return 'needs openssh-server (/usr/sbin/sshd)';
  if (!have('pdsh')) return 'needs pdsh (the peer)';
  for (const tool of ['ip', 'unshare', 'nsenter']) if (!have(tool)) return `needs ${tool}`;
  // cluster.sh has one fixed location; bringing it up would tear down someone else's.
  if (existsSync(CLUSTER_DIR) || sh("ip netns list | grep -q '^npr-h'").status === 0) return `a simulated cluster is already up (${CLUSTER_DIR}): not touching it`;
  return undefined;
}

// 5. Fan-out over SSH: 16 namespaced hosts × 8 no-op ranks, npurun vs pdsh running one command per host.
function benchFanOut() {
  const up = spawnSync(CLUSTER, ['up', String(FANOUT_HOSTS)], { encoding: 'utf8', env: childEnv });
  try {
    if (up.status !== 0) throw new Error(`cluster.sh up ${FANOUT_HOSTS}: ${up.stderr.trim()}`);
    const info = JSON.parse(readFileSync(join(up.stdout.trim().split('\n').pop(), 'cluster.json'), 'utf8'));
    const hostsFile = join(work, 'hosts16.yaml');
    writeFileSync(
      hostsFile,
      ['defaults:', '  user: root', `  identity_file: ${info.key}`, `  known_hosts: ${info.known_hosts}`, 'hosts:', ...info.hosts.map((h) => `  - { name: ${h.name}, address: ${h.address} }`), ''].join('\n'),
    );
    const leftoversOnHosts = (where) => {
      const left = spawnSync(CLUSTER, ['leftovers'], { encoding: 'utf8' }).stdout.trim();
      if (left) problem(`${where}: processes left on the simulated hosts:\n${left}`);
    };
    const runs = join(work, 'fanout-runs');
    const r = rounds([
      {
        name: 'npurun',
        measure: () => {
          const s = run('node', [BIN, 'launch', '--hosts', hostsFile, '--profile', 'torch', '--console', 'none', '--run-dir', runs, '--workdir', '/tmp/w', '--', 'true']);
          checkNothingLeft('fan-out, npurun (this machine)');
          leftoversOnHosts('fan-out, npurun');
          return s;
        },
      },
      {
        name: `pdsh -R ssh, one command per host (8 × \`true &\`; wait)`,
        measure: () =>
          run('pdsh', ['-R', 'ssh', '-f', String(FANOUT_HOSTS), '-w', `h[1-${FANOUT_HOSTS}]`, 'for i in 1 2 3 4 5 6 7 8; do true & done; wait'], {
            env: { PDSH_SSH_ARGS_APPEND: `-F ${info.ssh_config} -o BatchMode=yes` },
          }),
      },
    ]);
    rmSync(runs, { recursive: true, force: true });
    return compared(`fan-out: ${FANOUT_HOSTS} hosts × 8 no-op ranks over SSH (npurun: preflight, rank table, guarded ranks, logs)`, r, 'npurun', {
      remark: `all ${FANOUT_HOSTS} simulated hosts share this machine's cores: launcher overhead per host and rank, not network latency`,
    });
  } finally {
    spawnSync(CLUSTER, ['down'], { stdio: 'ignore' });
  }
}

function environment() {
  const firstLine = (cmd) => (sh(cmd).stdout ?? '').trim().split('\n')[0];
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const commit = firstLine(`git -C '${root}' rev-parse --short HEAD 2>/dev/null`);
  const dirty = sh(`git -C '${root}' status --porcelain -- src bench 2>/dev/null`).stdout.trim() ? ' (+ uncommitted changes)' : '';
  return {
    node: process.version,
    cores: cpus().length,
    cpu: cpuModel,
    kernel: release(),
    python: firstLine(`${PY} -c 'import platform; print(platform.python_version())' 2>/dev/null`) || 'none',
    torch: torch ? torch.version : 'not installed',
    pdsh: firstLine('pdsh -V 2>&1') || 'not installed',
    npurun: `${firstLine(`node '${BIN}' --version 2>/dev/null`) || 'npurun ?'} at ${commit || '?'}${dirty}`,
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
  const r = spawnSync(PY, ['-c', "import torch; from torch.distributed.run import get_args_parser as p; print(torch.__version__, p().get_default('monitor_interval'))"], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const [version, monitorInterval] = r.stdout.trim().split(' ');
  return { version, monitorInterval };
}

// Ctrl-C: the children got it too; still make sure nothing of ours survives.
process.on('SIGINT', () => {
  for (const p of taggedProcesses()) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  rmSync(work, { recursive: true, force: true });
  process.exit(130);
});

const torch = process.env.BENCH_TORCH === '0' ? undefined : probeTorch();
const env = environment();
process.stderr.write(`npurun bench: node ${env.node}, ${env.cores} cores, rows ${ROWS.join(',')}, median of ${REPEAT} after ${WARMUP} warm-up round(s)\n`);
if (torch && ROWS.some((r) => ['local', 'failure', 'logs'].includes(r))) notes.push('torchrun is Debian\'s python3-torch run through bench/torchrun_patched.py: as shipped it crashes on Python 3.11 in Std.from_str on every launch; the wrapper fixes only that');
else if (!torch) notes.push(`torchrun columns skipped: ${process.env.BENCH_TORCH === '0' ? 'BENCH_TORCH=0' : `no torch for ${PY}`}`);
if (env.busyAtStart > 0.2) notes.push(`something else was using ${(env.busyAtStart * 100).toFixed(0)}% of the CPUs when the bench started: numbers are noisier than usual`);

const benches = { local: benchLocalStart, failure: benchFailure, logs: benchLogs, ranktable: benchRankTable, fanout: benchFanOut };
for (const key of ROWS) {
  const bench = benches[key];
  if (!bench) throw new Error(`BENCH_ROWS: unknown row "${key}" (known: ${Object.keys(benches).join(', ')})`);
  const why = key === 'fanout' ? fanOutUnavailable() : undefined;
  if (why) {
    notes.push(`fan-out row skipped: ${why}`);
    process.stderr.write(`npurun bench: fan-out row skipped: ${why}\n`);
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
}

// Final ps check: nothing the bench started may still run.
const left = taggedProcesses();
if (left.length > 0) {
  problem(`after the bench: ${left.length} process(es) still running: ${left.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join('; ')}`);
  for (const p of left) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
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
  else for (const p of r.peers) lines.push(`| ${r.name} | ${fmt(r.npurun.secs)} | ${p.name} | ${fmt(p.secs)} | ${p.ratio.toFixed(2)} |`);
}
for (const r of rows.filter((x) => x.scale)) {
  lines.push('', `${r.name}:`, '');
  lines.push('| servers | ranks | generate | validate | total | per server ÷ at 1 server | per server ÷ at 64 | heap held | RSS growth | JSON |', '|---|---|---|---|---|---|---|---|---|---|');
  const ratio = (x) => (x == null ? '' : x.toFixed(2));
  for (const s of r.scale) {
    lines.push(
      `| ${s.servers} | ${s.ranks} | ${fmt(s.generateSecs)} | ${fmt(s.validateSecs)} | ${fmt(s.secs)} | ${ratio(s.perServerVs1)} | ${ratio(s.perServerVs64)} | ${s.heapMiB.toFixed(1)} MiB | ${s.rssGrowthMiB.toFixed(1)} MiB | ${(s.bytes / 1024).toFixed(0)} KiB |`,
    );
  }
}
const remarks = rows.filter((r) => r.remark).map((r) => `${r.key}: ${r.remark}`);
if (remarks.length || notes.length) lines.push('', ...[...remarks, ...notes].map((n) => `- ${n}`));
if (problems.length) lines.push('', '**PROBLEMS (correctness, not speed):**', '', ...problems.map((p) => `- ${p}`));
process.stdout.write(lines.join('\n') + '\n');
writeFileSync(OUT, JSON.stringify({ environment: env, rows, notes, problems }, null, 2) + '\n');
rmSync(work, { recursive: true, force: true });
if (problems.length) process.exitCode = 1;

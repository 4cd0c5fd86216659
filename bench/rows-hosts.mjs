// The hosts row (issue 19): N namespaced hosts x 8 no-op ranks over real SSH (test/cluster), npurun
// against pdsh starting the same 8 processes per host, with a plain home and with the cluster's slow
// login shell. Run by bench.mjs as its own process under the cluster lock:
//   flock /tmp/npurun-cluster.lock node bench/rows-hosts.mjs OUT.json
// OUT.json gets { row, problems, notes, targets }, which bench.mjs merges into its own.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkMergedLog, checkRankLogs } from './check-logs.mjs';
import { LINES, writeWriter } from './rows-local.mjs';
import {
  FAULT,
  REPEAT,
  WARMUP,
  checkNothingLeft,
  compared,
  rounds,
  checkRunRecord,
  childEnv,
  fmt,
  have,
  median,
  mib,
  notes,
  problem,
  problems,
  root,
  run,
  runCounted,
  runNpurun,
  sh,
  target,
  targets,
  work,
} from './harness.mjs';

export const CLUSTER = join(root, 'test', 'cluster', 'cluster.sh');
const HOSTS = (process.env.BENCH_HOSTS ?? '16,32,64').split(',').map(Number);
// How long one (host count, login) pair may take before it stops after the round it is in (at least one round).
const BUDGET_SECS = Number(process.env.BENCH_HOSTS_BUDGET ?? 60);
const LAUNCH_TIMEOUT_SECS = Number(process.env.BENCH_HOSTS_TIMEOUT ?? 240);
const ANSWER = 'npurun-bench-ok';
// The failure measurement runs on the 16-host plain-home cluster (else the smallest); the failing rank is
// the 6th on h2 (h1 with one host).
const FAILURE_HOSTS = HOSTS.includes(16) ? 16 : Math.min(...HOSTS);
const FAILING_RANK = FAILURE_HOSTS > 1 ? 13 : 5;

/** The cluster's option for a login shell that costs ~0.3 s and takes a shared lock, if cluster.sh has one. */
export function slowLoginOption() {
  if (process.env.BENCH_SLOW_LOGIN === '0' || !existsSync(CLUSTER)) return undefined;
  return /\bslow-login\b/.test(readFileSync(CLUSTER, 'utf8')) ? 'slow-login' : undefined;
}

/** Why the hosts row cannot run here, or undefined. */
export function hostsUnavailable() {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (!existsSync(CLUSTER)) return 'no test/cluster/cluster.sh';
  if (!existsSync('/usr/sbin/sshd')) return 'needs openssh-server (/usr/sbin/sshd)';
  if (!have('pdsh')) return 'needs pdsh (the peer)';
  for (const tool of ['ip', 'unshare', 'nsenter', 'flock']) if (!have(tool)) return `needs ${tool}`;
  return undefined;
}

/** Processes on the cluster's hosts other than each host's sshd listener, polled for up to `ms`. */
function leftoversOnHosts(info, ms = 5000) {
  const scan = () =>
    info.hosts.flatMap((h) => {
      const listener = h.sshdPidFile && existsSync(h.sshdPidFile) ? readFileSync(h.sshdPidFile, 'utf8').trim() : '';
      const pids = (spawnSync('ip', ['netns', 'pids', h.netns], { encoding: 'utf8' }).stdout ?? '')
        .split('\n')
        .filter((p) => p && p !== listener);
      return pids.flatMap((pid) => {
        try {
          return [
            `${h.name} ${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').trim().slice(0, 100)}`,
          ];
        } catch {
          return []; // exited while we looked
        }
      });
    });
  const end = Date.now() + ms;
  let left = scan();
  while (left.length > 0 && Date.now() < end) {
    sh('sleep 0.2');
    left = scan();
  }
  return left;
}

/** npurun's hosts file for every host of the cluster. */
function writeHostsFile(info) {
  const file = join(work, `hosts${info.hosts.length}.yaml`);
  const hosts = info.hosts.map((h) => `  - { name: ${h.name}, address: ${h.address} }`);
  writeFileSync(
    file,
    [
      'defaults:',
      '  user: root',
      `  identity_file: ${info.keyPath}`,
      `  known_hosts: ${info.knownHostsPath}`,
      'hosts:',
      ...hosts,
      '',
    ].join('\n'),
  );
  return file;
}

function clusterUp(n, login) {
  const args = ['up', String(n), '--owner', String(process.pid)];
  if (login) args.push('-o', `all:${login}`);
  const up = spawnSync(CLUSTER, args, { encoding: 'utf8', env: childEnv });
  if (up.status !== 0) throw new Error(`cluster.sh ${args.join(' ')}: ${up.stderr.trim().slice(-400)}`);
  return JSON.parse(readFileSync(join(up.stdout.trim().split('\n').pop(), 'cluster.json'), 'utf8'));
}

/** One (host count, login) pair: npurun and pdsh interleaved until REPEAT rounds or the time budget. */
function measurePair(n, login) {
  const where = `hosts, ${n} × 8${login ? `, ${login}` : ''}`;
  const t0 = Date.now();
  const info = clusterUp(n, login);
  const setupSecs = (Date.now() - t0) / 1000;
  const hostsFile = writeHostsFile(info);
  const samples = { npurun: [], pdsh: [], npurunRss: [], pdshRss: [], failure: [] };
  const errors = [];
  try {
    for (let i = 0; i < REPEAT && (i === 0 || Date.now() - t0 < BUDGET_SECS * 1000); i++) {
      const runs = join(work, `hosts-runs-${n}-${i}`);
      try {
        const r = runNpurun(
          [
            'launch',
            '--hosts',
            hostsFile,
            '--profile',
            'torch',
            '--console',
            'none',
            '--run-dir',
            runs,
            '--workdir',
            '/tmp/w',
            '--',
            'true',
          ],
          { timeoutSecs: LAUNCH_TIMEOUT_SECS },
        );
        samples.npurun.push(r.secs);
        samples.npurunRss.push(r.rssKiB);
        checkRunRecord(`${where}, npurun`, runs, { ranks: 8 * n, hosts: n });
      } catch (e) {
        errors.push(`npurun: ${e.message.slice(0, 300)}`);
      }
      checkNothingLeft(`${where}, npurun (this machine)`);
      const left = leftoversOnHosts(info);
      if (left.length)
        problem(`${where}, npurun: ${left.length} process(es) left on the hosts: ${left.slice(0, 5).join('; ')}`);
      rmSync(runs, { recursive: true, force: true });
      // BENCH_FAULT=pdsh-fail points pdsh at a closed port: every host fails at once, which must not pass for fast.
      const sshArgs = `-F ${info.sshConfigPath} -o BatchMode=yes${FAULT === 'pdsh-fail' ? ' -p 1' : ''}`;
      try {
        const p = runCounted(
          'pdsh',
          [
            '-S',
            '-R',
            'ssh',
            '-f',
            String(n),
            '-w',
            `h[1-${n}]`,
            `for i in 1 2 3 4 5 6 7 8; do true & done; wait; echo ${ANSWER}`,
          ],
          {
            env: { PDSH_SSH_ARGS_APPEND: sshArgs },
            stdout: 'pipe',
            timeoutSecs: LAUNCH_TIMEOUT_SECS,
          },
        );
        const answered = new Set(
          p.stdout
            .split('\n')
            .filter((l) => l.endsWith(`: ${ANSWER}`))
            .map((l) => l.split(':')[0]),
        );
        if (answered.size !== n) problem(`${where}, pdsh: ${answered.size} of ${n} hosts answered`);
        samples.pdsh.push(p.secs);
        samples.pdshRss.push(p.maxRssKiB);
      } catch (e) {
        problem(`${where}, pdsh: ${e.message.slice(0, 300)}`);
      }
      if (n === FAILURE_HOSTS && !login) samples.failure.push(measureFailure(info, hostsFile, where, i));
    }
  } finally {
    spawnSync(CLUSTER, ['down', '--if-id', info.id], { stdio: 'ignore' });
  }
  for (const e of errors) problem(`${where}: ${e}`);
  return {
    hosts: n,
    login: login ?? 'plain',
    setupSecs,
    npurun: samples.npurun.length
      ? { secs: median(samples.npurun), samples: samples.npurun, rssKiB: Math.max(...samples.npurunRss) }
      : undefined,
    pdsh: samples.pdsh.length
      ? { secs: median(samples.pdsh), samples: samples.pdsh, rssKiB: Math.max(...samples.pdshRss) }
      : undefined,
    failure: samples.failure.filter(Number.isFinite).length
      ? { secs: median(samples.failure.filter(Number.isFinite)), samples: samples.failure }
      : undefined,
    errors,
  };
}

/**
 * Issue 19's failure target: rank FAILING_RANK (on the second host) exits 1 after 1 s, writing its exit
 * time to its host's private /tmp just before; the others sleep. Seconds from that exit until npurun
 * has stopped every rank on every host and exited with code 1 (NaN if the launch went wrong).
 */
function measureFailure(info, hostsFile, where, i) {
  const runs = join(work, `hosts-fail-${i}`);
  const script = `import os, sys, time\nif os.environ["RANK"] == "${FAILING_RANK}":\n    time.sleep(1)\n    open("/tmp/npurun-bench-exit-at", "w").write(repr(time.time()))\n    sys.exit(1)\ntime.sleep(60)\n`;
  const stamp = join(info.hosts[Math.floor(FAILING_RANK / 8)].root, 'tmp', 'npurun-bench-exit-at');
  rmSync(stamp, { force: true });
  let secs = NaN;
  try {
    runNpurun(
      [
        'launch',
        '--hosts',
        hostsFile,
        '--profile',
        'torch',
        '--console',
        'none',
        '--run-dir',
        runs,
        '--workdir',
        '/tmp/w',
        '--',
        'python3',
        '-c',
        script,
      ],
      { expect: 1, timeoutSecs: LAUNCH_TIMEOUT_SECS },
    );
    const end = Date.now() / 1000;
    if (!existsSync(stamp))
      throw new Error(`rank ${FAILING_RANK} never wrote its exit time (did another rank fail first?)`);
    secs = end - Number(readFileSync(stamp, 'utf8'));
    checkRunRecord(`${where}, failure`, runs, {
      ranks: 8 * info.hosts.length,
      hosts: info.hosts.length,
      status: 'failed',
      exitCode: 1,
    });
  } catch (e) {
    problem(`${where}, failure: ${e.message.slice(0, 300)}`);
  }
  checkNothingLeft(`${where}, failure (this machine)`);
  // Right at exit, not after a grace: every rank must already be stopped.
  const left = leftoversOnHosts(info, 1000);
  if (left.length)
    problem(
      `${where}, failure: ${left.length} process(es) still on the hosts after npurun exited: ${left.slice(0, 5).join('; ')}`,
    );
  rmSync(runs, { recursive: true, force: true });
  return secs;
}

/**
 * Issue 19's "logs over SSH" target: 8 ranks × LINES lines on one namespaced host, npurun (everything
 * saved on the launcher, every line checked) against the same writers redirected to files on the host
 * over one ssh session (the floor, every line checked). Target: npurun at most 2× the floor.
 */
function benchSshLogs() {
  const info = clusterUp(1);
  const h = info.hosts[0];
  try {
    writeWriter(join(h.root, 'tmp', 'writer.py'));
    const hostsFile = writeHostsFile(info);
    const rss = [];
    const r = rounds([
      {
        name: 'npurun',
        measure: (i) => {
          const runs = join(work, `ssh-logs-${i}`);
          const n = runNpurun([
            'launch',
            '--hosts',
            hostsFile,
            '--profile',
            'torch',
            '--console',
            'none',
            '--run-dir',
            runs,
            '--workdir',
            '/tmp/w',
            '--',
            'python3',
            '/tmp/writer.py',
          ]);
          rss.push(n.rssKiB);
          checkNothingLeft('logs over SSH, npurun');
          checkRunRecord('logs over SSH, npurun', runs, { ranks: 8 });
          const dir = join(runs, readdirSync(runs).find((d) => existsSync(join(runs, d, 'run.json'))) ?? 'none');
          const p =
            checkRankLogs((k) => join(dir, 'logs', `rank-${k}.log`), 8, LINES) ??
            checkMergedLog(join(dir, 'merged.log'), 8, LINES);
          if (p) problem(`logs over SSH, npurun: ${p}`);
          rmSync(runs, { recursive: true, force: true });
          return n.secs;
        },
      },
      {
        name: 'ranks on the host writing straight to its files, over one ssh session (floor)',
        measure: () => {
          const s = run('ssh', [
            '-F',
            info.sshConfigPath,
            '-o',
            'BatchMode=yes',
            h.name,
            'rm -rf /tmp/f && mkdir /tmp/f && for r in 0 1 2 3 4 5 6 7; do RANK=$r python3 /tmp/writer.py > /tmp/f/rank$r.log & done; wait',
          ]).secs;
          const p = checkRankLogs((k) => join(h.root, 'tmp', 'f', `rank${k}.log`), 8, LINES);
          if (p) problem(`logs over SSH, floor: ${p}`);
          return s;
        },
      },
    ]);
    const row = compared(
      `logs over SSH, 1 namespaced host, 8 ranks × ${LINES} lines, everything saved on the launcher`,
      r,
      'npurun',
      {
        launcherRssKiB: rss,
        remark: `every line checked (npurun: per-rank logs and merged.log; floor: the 8 files on the host); launcher peak RSS ${mib(median(rss.slice(WARMUP)))}`,
      },
    );
    target('sshlogs', 'logs over SSH: npurun ÷ floor (issue 19: at most 2)', row.peers[0].ratio, 2, '×');
    return row;
  } finally {
    spawnSync(CLUSTER, ['down', '--if-id', info.id], { stdio: 'ignore' });
  }
}

export function benchHosts() {
  const logins = [undefined];
  const slow = slowLoginOption();
  if (slow) logins.push(slow);
  else
    notes.push(
      `hosts row: no slow login shell (${process.env.BENCH_SLOW_LOGIN === '0' ? 'BENCH_SLOW_LOGIN=0' : 'test/cluster/cluster.sh has no slow-login option yet'}): plain homes only`,
    );
  /** @type {Partial<ReturnType<typeof measurePair>>[]} */
  const pairs = [];
  for (const login of logins) {
    for (const n of HOSTS) {
      process.stderr.write(`npurun bench: hosts, ${n} × 8, ${login ?? 'plain home'}...\n`);
      try {
        pairs.push(measurePair(n, login));
      } catch (e) {
        problem(`hosts, ${n} × 8, ${login ?? 'plain'}: ${e.message}`);
        pairs.push({ hosts: n, login: login ?? 'plain', errors: [e.message] });
      }
      const p = pairs.at(-1);
      if (p.npurun && p.pdsh) {
        process.stderr.write(
          `npurun bench:   npurun ${fmt(p.npurun.secs)} (peak RSS ${mib(p.npurun.rssKiB)}), pdsh ${fmt(p.pdsh.secs)}, ${p.npurun.samples.length} round(s)\n`,
        );
        target(
          'hosts',
          `${n} hosts × 8, ${p.login} home: npurun ÷ pdsh (issue 19: at most 1.5)`,
          p.npurun.secs / p.pdsh.secs,
          1.5,
          '×',
        );
        if (p.failure)
          target(
            'hosts',
            `failure of rank ${FAILING_RANK} of ${8 * n} on ${n} hosts until every rank stopped and npurun exited 1 (issue 19: at most 0.5 s)`,
            p.failure.secs,
            0.5,
            ' s',
          );
      } else {
        target(
          'hosts',
          `${n} hosts × 8, ${p.login} home: npurun ÷ pdsh (issue 19: at most 1.5): no measurement`,
          Infinity,
          1.5,
          '×',
        );
      }
    }
    const mine = pairs.filter((p) => p.login === (login ?? 'plain') && p.npurun);
    const small = mine.find((p) => p.hosts === 16);
    const large = mine.filter((p) => p.hosts > 16).at(-1);
    if (small && large) {
      const perHost = large.npurun.secs / large.hosts / (small.npurun.secs / small.hosts);
      target(
        'hosts',
        `per-host cost at ${large.hosts} ÷ at 16 hosts, ${small.login} home (issue 19: at most 1.2, asked at 128)`,
        perHost,
        1.2,
        '×',
      );
    }
    if (large)
      target(
        'hosts',
        `launcher peak RSS at ${large.hosts} hosts × 8, ${large.login} home (issue 19: at most 300 MiB, asked at 128)`,
        large.npurun.rssKiB / 1024,
        300,
        ' MiB',
      );
  }
  return {
    name: 'hosts: N namespaced hosts × 8 no-op ranks over SSH, npurun vs `pdsh -S -R ssh -f N` starting the same 8 processes per host',
    hosts: pairs,
    remark: `all hosts share this machine's cores: launcher overhead per host and rank, not network latency; every npurun launch's run.json checked (8 ranks a host, each exited 0), every pdsh host's answer counted, nothing left on any host`,
  };
}

// As its own process (bench.mjs starts it under the cluster lock): write the row and what it found.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const out = process.argv[2];
  const key = process.argv[3] ?? 'hosts';
  // The bench that asked may have been killed while this waited for the lock (flock outlives it):
  // then leave at once, releasing the lock, rather than bring up a cluster nobody reads.
  const benchPid = Number(process.argv[4]);
  try {
    if (benchPid) process.kill(benchPid, 0);
  } catch {
    process.exit(3);
  }
  let row;
  try {
    row = (key === 'sshlogs' ? benchSshLogs : benchHosts)();
  } catch (e) {
    problem(`${key} row failed: ${e.message}`);
    row = { name: key, error: e.message };
  }
  writeFileSync(out, JSON.stringify({ row, problems, notes, targets }));
  rmSync(work, { recursive: true, force: true });
}

/**
 * npurun's test cluster for vitest: N simulated Ascend hosts (1..244), each a network namespace on bridge
 * npc-br (10.213.0.0/24) with its own mounts (/etc/hccn.conf, npu-smi and hccn_tool stand-ins, /tmp,
 * /root) and a real OpenSSH sshd. test/cluster/cluster.sh builds and removes it; this module drives it.
 *
 *   describeCluster('launch on 4 hosts', () => {
 *     let c: Cluster;
 *     beforeAll(async () => { c = await startCluster(4, (i) => (i === 3 ? { unhealthy: [2] } : {})); }, CLUSTER_START_TIMEOUT);
 *     afterAll(() => c?.stop());
 *     it('...', async () => { ...; expect(await c.waitForNoLeftovers()).toEqual([]); });
 *   });
 *
 * API:
 *   startCluster(n, options | (i) => options)  i is the 0-based index into `hosts` (host h(i+1)); one
 *                                              options object applies to every host
 *   Cluster.hosts[i]                           { index, name 'h1'.., address 10.213.0.(10+index), netns, root,
 *                                                sshPort 22, chip, devices (npu-smi's ids), deviceIps }
 *   Cluster.keyPath / knownHostsPath / sshConfigPath (Host h1..hN) / user 'root'
 *   hostSpec(host), hostsFile(hosts?, extra?)  npurun's view of a host; a YAML inventory of hosts (default all)
 *   share(file)                                a copy every host sees at the same path (the cluster dir)
 *   exec(host, argv)                           runs inside the host's network, mount and UTS namespaces
 *   pids(host), leftovers(opts?), waitForNoLeftovers(ms?, opts?)   processes other than the host's sshd
 *                                              listener (opts.exceptSshdSessions: nor sshd's session processes)
 *   logins(host), shimRuns(host), loginLockPath    root's logins on the host (every ~/.bashrc run); the
 *                                              python3 shim's runs (slowLogin); the lock slow logins share
 *   cutLink(host) / restoreLink(host)          root-side veth down / up: the host drops off the network
 *   stop()                                     kills everything, removes namespaces, links, files; idempotent
 *   clusterPrerequisites(), describeCluster(name, fn)  skip with a reason, or fail under CI=true
 *   itWithTorch(name, fn, timeout)             it() that needs torch for /usr/bin/python3 (Debian's
 *                                              python3-torch): skipped with the reason, failing under CI=true
 * One cluster at a time on a machine: startCluster holds /tmp/npurun-cluster.lock from start to stop()
 * (or to the process's end), unless a process it descends from holds it already
 * (`flock /tmp/npurun-cluster.lock npx vitest run ...`); cluster.sh also waits while a live owner holds one.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, it } from 'vitest';
import type { HostSpec } from '../../src/plan/types.js';

export const CLUSTER_SH = fileURLToPath(new URL('./cluster.sh', import.meta.url));
/** Held by whoever drives the test cluster (startCluster, or `flock` around a manual cluster.sh session). */
export const CLUSTER_LOCK = '/tmp/npurun-cluster.lock';
/** A beforeAll timeout for startCluster: it may wait for another suite's cluster, then build 128 hosts. */
export const CLUSTER_START_TIMEOUT = 600_000;

export interface SlowLogin {
  /** What the login costs before the lock (a pyenv/conda/CANN init), default 250 ms. */
  sleepMs?: number;
  /** How long each login holds the lock every host shares (`pyenv rehash`), default 50 ms. */
  lockMs?: number;
  /** What the python3 shim costs before it waits for the lock and execs /usr/bin/python3, default 50 ms. */
  shimMs?: number;
}

export interface SimHostOptions {
  /** npu-smi layout; A3 has two chips per NPU and numbers devices by Phy-ID. Default 910B. */
  chip?: '910B' | 'A3';
  /** Number of devices, 0..16. Default 8 (910B) or 16 (A3). */
  devices?: number;
  /** Devices npu-smi does not list (fell off the bus). */
  missing?: number[];
  /** Devices with health Warning. */
  unhealthy?: number[];
  /** Devices npu-smi shows held by a process (named python3). */
  held?: { device: number; pid: number }[];
  /** Devices without /etc/hccn.conf lines; hccn_tool still answers for them. */
  noHccnEntry?: number[];
  /** Devices without hccn.conf lines whose `hccn_tool -i N -ip -g` fails. */
  noAddress?: number[];
  /** No /usr/local/Ascend at all. */
  noDriver?: boolean;
  /** No sshd: connections are refused. */
  noSshd?: boolean;
  /** known_hosts lists another key for this host. */
  wrongHostKey?: boolean;
  /**
   * Root's ~/.bashrc costs what a pyenv init does (~0.3 s, part of it under a lock shared by every host),
   * and a pyenv-like python3 shim comes first on PATH. `true` for the defaults.
   */
  slowLogin?: boolean | SlowLogin;
}

export interface SimHost {
  /** 1-based, as in the name. */
  index: number;
  name: string;
  address: string;
  netns: string;
  /** The host's private dir: its /tmp (tmp/), home (home/), /etc upper layer (etc/), sshd.log, logins. */
  root: string;
  sshPort: 22;
  chip: '910B' | 'A3';
  /** Device ids as npu-smi lists them. */
  devices: number[];
  /** Device id -> the IP hccn.conf or hccn_tool gives it (192.168.<index>.<100+id>). */
  deviceIps: Record<number, string>;
}

export interface Leftover {
  host: string;
  pid: number;
  cmdline: string;
}

export interface LeftoverOptions {
  exceptSshdSessions?: boolean;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** One run of root's ~/.bashrc on a host (a login shell, `ssh host CMD`, an exec channel, sftp). */
export interface Login {
  /** Seconds since the epoch. */
  time: number;
  pid: number;
  /** $BASH_EXECUTION_STRING (newlines shown as \n), else $0; for the shim, its arguments. */
  command: string;
}

export interface Cluster {
  dir: string;
  hosts: SimHost[];
  keyPath: string;
  knownHostsPath: string;
  /** An ssh_config with a Host entry per host name (address, root, key, known_hosts, strict checking). */
  sshConfigPath: string;
  user: 'root';
  /** The file every slowLogin host's logins and shims lock (one for the whole cluster, like an NFS ~/.pyenv). */
  loginLockPath: string;
  /** npurun's view of a host: SSH as root with the cluster's key and known_hosts, strict checking. */
  hostSpec(host: SimHost): HostSpec;
  /** Writes a YAML inventory of these hosts (default: all), `extra` appended, and returns its path. */
  hostsFile(hosts?: SimHost[], extra?: string): string;
  /**
   * Copies a file into the cluster dir, which every host sees at the same path, and returns that path:
   * hosts share the filesystem like a cluster with shared storage, except their private /tmp and /root,
   * where a checkout (CI's clone in /tmp) may live.
   */
  share(file: string): string;
  exec(host: SimHost, cmd: string[]): Promise<ExecResult>;
  /** Processes in the host's network namespace minus its sshd listener. */
  pids(host: SimHost): Promise<number[]>;
  /**
   * Every process in any host except the sshd listeners, with its command line. With
   * `exceptSshdSessions`, also without sshd's per-connection processes ("sshd: root@notty"), which
   * outlive a cut link until TCP gives up.
   */
  leftovers(options?: LeftoverOptions): Promise<Leftover[]>;
  /** Polls leftovers() until there are none or `ms` have passed; returns the last answer. */
  waitForNoLeftovers(ms?: number, options?: LeftoverOptions): Promise<Leftover[]>;
  /** Every login on the host so far, oldest first. */
  logins(host: SimHost): Promise<Login[]>;
  /** Every run of the python3 shim on the host so far (slowLogin hosts only). */
  shimRuns(host: SimHost): Promise<Login[]>;
  cutLink(host: SimHost): Promise<void>;
  restoreLink(host: SimHost): Promise<void>;
  stop(): Promise<void>;
}

/** What cluster.sh writes to cluster.json for each host. */
interface HostRecord extends Omit<SimHost, 'sshPort' | 'deviceIps'> {
  veth: string;
  mountNs: string;
  utsNs: string;
  sshdPidFile: string | null;
  deviceIps: Record<string, string>;
}

interface ClusterRecord {
  id: string;
  dir: string;
  keyPath: string;
  knownHostsPath: string;
  sshConfigPath: string;
  hosts: HostRecord[];
}

const REQUIRED_COMMANDS = ['ip', 'unshare', 'nsenter', 'flock', 'ssh-keygen'];

export function clusterPrerequisites(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'needs Linux (network and mount namespaces)' };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (network namespaces, mounts)' };
  if (!existsSync('/usr/sbin/sshd'))
    return { ok: false, reason: 'needs /usr/sbin/sshd (apt-get install openssh-server)' };
  for (const command of REQUIRED_COMMANDS) {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    } catch {
      return { ok: false, reason: `needs ${command} (iproute2, util-linux, openssh-client)` };
    }
  }
  if (!/\boverlay\b/.test(readFileSync('/proc/filesystems', 'utf8')))
    return { ok: false, reason: 'needs overlayfs in the kernel' };
  return { ok: true };
}

/** describe() for cluster suites: skipped with a one-line reason, but failing under CI=true. */
export function describeCluster(name: string, fn: () => void): void {
  const pre = clusterPrerequisites();
  if (pre.ok) {
    describe(name, fn);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      throw new Error(`test cluster unavailable (CI=true makes this a failure): ${pre.reason}`);
    });
  } else {
    process.stderr.write(`skipping "${name}": test cluster unavailable: ${pre.reason}\n`);
    describe.skip(name, fn);
  }
}

/** Why /usr/bin/python3 cannot `import torch`, or undefined when it can. */
export function torchMissing(): string | undefined {
  // Test hook: pretend torch is missing (cluster.test.ts proves the skip and the CI failure with it).
  if (process.env.NPURUN_TEST_NO_TORCH === '1') return 'NPURUN_TEST_NO_TORCH=1 (torch treated as missing)';
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch.distributed'], { stdio: 'ignore', timeout: 60_000 });
    return undefined;
  } catch {
    return '/usr/bin/python3 cannot import torch (apt-get install python3-torch)';
  }
}

let torchReason: string | undefined | null = null;

/** it() for a test that runs a real PyTorch job: skipped with the reason without torch, failing under CI=true. */
export function itWithTorch(name: string, fn: () => Promise<void>, timeout?: number): void {
  torchReason = torchReason === null ? torchMissing() : torchReason;
  const reason = torchReason;
  if (reason === undefined) {
    it(name, fn, timeout);
  } else if (process.env.CI === 'true') {
    it(name, () => {
      throw new Error(`torch unavailable (CI=true makes this a failure): ${reason}`);
    });
  } else {
    process.stderr.write(`skipping "${name}": ${reason}\n`);
    it.skip(name, fn, timeout);
  }
}

function list(values: number[] | undefined): string | undefined {
  return values && values.length > 0 ? values.join(',') : undefined;
}

const seconds = (ms: number | undefined) => (ms === undefined ? undefined : String(ms / 1000));

/** cluster.sh's -o I:KEY[=VALUE] arguments for host `target` (a 1-based index, or "all"). */
function hostArgs(target: number | 'all', o: SimHostOptions): string[] {
  const slow = o.slowLogin === true ? {} : o.slowLogin || undefined;
  const pairs: [string, string | boolean | undefined][] = [
    ['chip', o.chip],
    ['devices', o.devices === undefined ? undefined : String(o.devices)],
    ['missing', list(o.missing)],
    ['unhealthy', list(o.unhealthy)],
    ['held', o.held && o.held.length > 0 ? o.held.map((h) => `${h.device}:${h.pid}`).join(',') : undefined],
    ['no-hccn-entry', list(o.noHccnEntry)],
    ['no-address', list(o.noAddress)],
    ['no-driver', o.noDriver],
    ['no-sshd', o.noSshd],
    ['wrong-host-key', o.wrongHostKey],
    ['slow-login', slow !== undefined],
    ['login-sleep', seconds(slow?.sleepMs)],
    ['login-lock', seconds(slow?.lockMs)],
    ['shim-sleep', seconds(slow?.shimMs)],
  ];
  return pairs.flatMap(([key, value]) => {
    if (value === undefined || value === false) return [];
    return ['-o', value === true ? `${target}:${key}` : `${target}:${key}=${value}`];
  });
}

// ---------------------------------------------------------------- one cluster at a time

/** The pid holding an flock on `path` (from /proc/locks), if any. */
function lockHolder(path: string): number | undefined {
  let st;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  const major = (st.dev >> 8) & 0xfff;
  const minor = (st.dev & 0xff) | ((st.dev >> 12) & 0xfff00);
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`;
  for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    // "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; a waiter's line starts "1: -> FLOCK".
    if (f[1] === 'FLOCK' && f[5] === id) return Number(f[4]);
  }
  return undefined;
}

function ancestors(): Set<number> {
  const found = new Set<number>();
  let pid = process.pid;
  while (pid > 1 && !found.has(pid)) {
    found.add(pid);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return found;
}

const describePid = (pid: number) => {
  const cmd = existsSync(`/proc/${pid}/cmdline`)
    ? readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ')
    : '';
  return `pid ${pid}${cmd ? ` (${cmd.slice(0, 100)})` : ''}`;
};

// This process's hold on CLUSTER_LOCK: a second startCluster before stop() shares it instead of waiting on itself.
let held: { count: number; release: Promise<() => void> } | undefined;

/**
 * Takes CLUSTER_LOCK through a `flock` child that keeps it until the last release() or until this process
 * ends (its stdin closes). Returns a no-op release when a process this one descends from holds the lock.
 */
async function takeClusterLock(): Promise<() => void> {
  const holder = lockHolder(CLUSTER_LOCK);
  if (holder !== undefined && ancestors().has(holder)) return () => {};
  if (!held) held = { count: 0, release: flockChild() };
  const mine = held;
  mine.count++;
  try {
    await mine.release;
  } catch (error) {
    if (held === mine) held = undefined;
    throw error;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--mine.count === 0) {
      if (held === mine) held = undefined;
      void mine.release.then((release) => release());
    }
  };
}

async function flockChild(): Promise<() => void> {
  const child = spawn('flock', [CLUSTER_LOCK, 'sh', '-c', 'echo locked; exec cat > /dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const waiting = setTimeout(() => {
    const h = lockHolder(CLUSTER_LOCK);
    process.stderr.write(
      `startCluster: waiting for ${CLUSTER_LOCK}${h === undefined ? '' : `, held by ${describePid(h)}`}\n`,
    );
  }, 2000);
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`flock ${CLUSTER_LOCK} exited ${code}`)));
      child.once('error', reject);
    });
  } finally {
    clearTimeout(waiting);
  }
  child.stdout.destroy();
  child.unref();
  (child.stdin as unknown as Socket).unref();
  return () => child.stdin.end();
}

// ---------------------------------------------------------------- processes per host

/** Network namespace inode -> host name, for the hosts given. */
function netnsInodes(hosts: HostRecord[]): Map<number, string> {
  const map = new Map<number, string>();
  for (const h of hosts) {
    try {
      map.set(statSync(`/run/netns/${h.netns}`).ino, h.name);
    } catch {
      // namespace gone (stopped cluster): no processes there
    }
  }
  return map;
}

/** One pass over /proc: pid -> host name for every process in one of these hosts' network namespaces. */
function processesByHost(hosts: HostRecord[]): Map<number, string> {
  const inodes = netnsInodes(hosts);
  const found = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let link: string;
    try {
      link = readlinkSync(`/proc/${entry}/ns/net`);
    } catch {
      continue;
    }
    const host = inodes.get(Number(/\[(\d+)\]/.exec(link)?.[1]));
    if (host !== undefined) found.set(Number(entry), host);
  }
  return found;
}

function readLogins(text: string): Login[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [time, pid, ...command] = line.split(' ');
      return { time: Number(time), pid: Number(pid), command: command.join(' ') };
    });
}

// ---------------------------------------------------------------- start

// Clusters this process has not stopped yet: torn down when the process exits, whatever happened.
const running = new Set<string>();
process.once('exit', () => {
  for (const id of running) execFileSync(CLUSTER_SH, ['down', '--if-id', id], { stdio: 'ignore' });
});

export async function startCluster(
  n: number,
  options: SimHostOptions | ((i: number) => SimHostOptions) = {},
): Promise<Cluster> {
  const args = ['up', String(n), '--owner', String(process.pid)];
  if (typeof options === 'function') for (let i = 0; i < n; i++) args.push(...hostArgs(i + 1, options(i)));
  else args.push(...hostArgs('all', options));
  const release = await takeClusterLock();
  let record: ClusterRecord;
  try {
    const up = await execa(CLUSTER_SH, args, { reject: false });
    if (up.exitCode !== 0)
      throw new Error(`cluster.sh ${args.join(' ')} failed (exit ${up.exitCode}): ${up.stderr.trim()}`);
    record = JSON.parse(await readFile(`${up.stdout.trim().split('\n').at(-1)}/cluster.json`, 'utf8')) as ClusterRecord;
  } catch (error) {
    release();
    throw error;
  }
  running.add(record.id);

  const byName = new Map(record.hosts.map((h) => [h.name, h]));
  const recordOf = (host: SimHost): HostRecord => {
    const found = byName.get(host.name);
    if (!found) throw new Error(`${host.name} is not a host of this cluster`);
    return found;
  };
  const listenerPid = async (h: HostRecord): Promise<number | undefined> => {
    if (!h.sshdPidFile) return undefined;
    const text = await readFile(h.sshdPidFile, 'utf8').catch(() => '');
    return text.trim() === '' ? undefined : Number(text.trim());
  };
  const cmdline = async (pid: number): Promise<string | undefined> => {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
    return raw?.replace(/\0+$/, '').replace(/\0/g, ' ');
  };
  /** Processes per host name, without the sshd listeners. */
  const nonListeners = async (hosts: HostRecord[]): Promise<Map<number, string>> => {
    const listeners = new Set(await Promise.all(hosts.map(listenerPid)));
    const found = processesByHost(hosts);
    for (const pid of found.keys()) if (listeners.has(pid)) found.delete(pid);
    return found;
  };
  const link = async (host: SimHost, state: 'up' | 'down') => {
    await execa('ip', ['link', 'set', recordOf(host).veth, state]);
  };
  let inventories = 0;

  const cluster: Cluster = {
    dir: record.dir,
    hosts: record.hosts.map((h) => ({
      index: h.index,
      name: h.name,
      address: h.address,
      netns: h.netns,
      root: h.root,
      sshPort: 22,
      chip: h.chip,
      devices: h.devices,
      deviceIps: Object.fromEntries(Object.entries(h.deviceIps).map(([id, ip]) => [Number(id), ip])),
    })),
    keyPath: record.keyPath,
    knownHostsPath: record.knownHostsPath,
    sshConfigPath: record.sshConfigPath,
    user: 'root',
    loginLockPath: `${record.dir}/pyenv/.pyenv-shim.lock`,
    hostSpec: (host) => ({
      name: host.name,
      address: host.address,
      local: false,
      devices: 'auto',
      ssh: {
        hostname: host.address,
        port: host.sshPort,
        user: 'root',
        identityFiles: [record.keyPath],
        knownHostsFiles: [record.knownHostsPath],
        strictHostKeyChecking: 'yes',
        useAgent: false,
      },
    }),
    hostsFile: (hosts = cluster.hosts, extra = '') => {
      const path = `${record.dir}/hosts-${++inventories}.yaml`;
      const lines = [
        'defaults:',
        '  user: root',
        `  identity_file: ${record.keyPath}`,
        `  known_hosts: ${record.knownHostsPath}`,
        'hosts:',
        ...hosts.map((h) => `  - { name: ${h.name}, address: ${h.address} }`),
      ];
      writeFileSync(path, lines.join('\n') + '\n' + extra);
      return path;
    },
    share: (file) => {
      mkdirSync(`${record.dir}/shared`, { recursive: true });
      const target = `${record.dir}/shared/${basename(file)}`;
      copyFileSync(file, target);
      return target;
    },
    exec: async (host, cmd) => {
      const h = recordOf(host);
      const r = await execa(
        'nsenter',
        [`--net=/run/netns/${h.netns}`, `--mount=${h.mountNs}`, `--uts=${h.utsNs}`, '--', ...cmd],
        { reject: false },
      );
      return { stdout: r.stdout, stderr: r.stderr, code: r.exitCode ?? -1 };
    },
    pids: async (host) => [...(await nonListeners([recordOf(host)])).keys()].sort((a, b) => a - b),
    leftovers: async (options = {}) => {
      const found = await nonListeners(record.hosts);
      const order = new Map(record.hosts.map((h, i) => [h.name, i]));
      const all = await Promise.all(
        [...found].map(async ([pid, host]) => ({ host, pid, cmdline: await cmdline(pid) })),
      );
      // A process that exited between the scan and reading its cmdline is gone, not left over.
      return all
        .filter(
          (l): l is Leftover =>
            l.cmdline !== undefined && !(options.exceptSshdSessions && l.cmdline.startsWith('sshd: ')),
        )
        .sort((a, b) => (order.get(a.host) as number) - (order.get(b.host) as number) || a.pid - b.pid);
    },
    waitForNoLeftovers: async (ms = 5000, options = {}) => {
      const end = Date.now() + ms;
      let left = await cluster.leftovers(options);
      while (left.length > 0 && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = await cluster.leftovers(options);
      }
      return left;
    },
    logins: async (host) => readLogins(await readFile(`${recordOf(host).root}/logins`, 'utf8').catch(() => '')),
    shimRuns: async (host) => readLogins(await readFile(`${recordOf(host).root}/shim-runs`, 'utf8').catch(() => '')),
    cutLink: (host) => link(host, 'down'),
    restoreLink: (host) => link(host, 'up'),
    stop: async () => {
      if (!running.has(record.id)) return;
      await execa(CLUSTER_SH, ['down', '--if-id', record.id], { reject: false });
      running.delete(record.id);
      release();
    },
  };
  return cluster;
}

/**
 * npurun's test cluster for vitest: N simulated Ascend hosts, each a network namespace on bridge npc-br
 * (10.213.0.0/24) with its own mounts (/etc/hccn.conf, npu-smi and hccn_tool stand-ins, /tmp, /root) and a
 * real OpenSSH sshd. test/cluster/cluster.sh builds and removes it; this module drives it.
 *
 *   describeCluster('launch on 4 hosts', () => {
 *     let c: Cluster;
 *     beforeAll(async () => { c = await startCluster(4, (i) => (i === 3 ? { unhealthy: [2] } : {})); });
 *     afterAll(() => c?.stop());
 *     it('...', async () => { ...; expect(await c.waitForNoLeftovers()).toEqual([]); });
 *   });
 *
 * API:
 *   startCluster(n, options | (i) => options)  n in 1..16; i is the 0-based index into `hosts` (host h(i+1))
 *   Cluster.hosts[i]                           { index, name 'h1'.., address 10.213.0.(10+index), netns, root,
 *                                                sshPort 22, chip, devices (npu-smi's ids), deviceIps }
 *   Cluster.keyPath / knownHostsPath / sshConfigPath (Host h1..hN) / user 'root'
 *   exec(host, argv)                           runs inside the host's network, mount and UTS namespaces
 *   pids(host), leftovers(), waitForNoLeftovers(ms)   processes other than the host's sshd listener
 *   cutLink(host) / restoreLink(host)          root-side veth down / up: the host drops off the network
 *   stop()                                     kills everything, removes namespaces, links, files; idempotent
 *   clusterPrerequisites(), describeCluster(name, fn)  skip with a reason, or fail under CI=true
 * One cluster at a time on a machine: startCluster waits while another live process owns one.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe } from 'vitest';

export const CLUSTER_SH = fileURLToPath(new URL('./cluster.sh', import.meta.url));

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
}

export interface SimHost {
  /** 1-based, as in the name. */
  index: number;
  name: string;
  address: string;
  netns: string;
  /** The host's private dir: its /tmp (tmp/), home (home/), /etc upper layer (etc/), sshd.log. */
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

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface Cluster {
  dir: string;
  hosts: SimHost[];
  keyPath: string;
  knownHostsPath: string;
  /** An ssh_config with a Host entry per host name (address, root, key, known_hosts, strict checking). */
  sshConfigPath: string;
  user: 'root';
  exec(host: SimHost, cmd: string[]): Promise<ExecResult>;
  /** `ip netns pids` of the host minus its sshd listener. */
  pids(host: SimHost): Promise<number[]>;
  /** Every process in any host except the sshd listeners, with its command line. */
  leftovers(): Promise<Leftover[]>;
  /** Polls leftovers() until there are none or `ms` have passed; returns the last answer. */
  waitForNoLeftovers(ms?: number): Promise<Leftover[]>;
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
  if (!existsSync('/usr/sbin/sshd')) return { ok: false, reason: 'needs /usr/sbin/sshd (apt-get install openssh-server)' };
  for (const command of REQUIRED_COMMANDS) {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    } catch {
      return { ok: false, reason: `needs ${command} (iproute2, util-linux, openssh-client)` };
    }
  }
  if (!/\boverlay\b/.test(readFileSync('/proc/filesystems', 'utf8'))) return { ok: false, reason: 'needs overlayfs in the kernel' };
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

function list(values: number[] | undefined): string | undefined {
  return values && values.length > 0 ? values.join(',') : undefined;
}

/** cluster.sh's -o I:KEY[=VALUE] arguments for host `index` (1-based). */
function hostArgs(index: number, o: SimHostOptions): string[] {
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
  ];
  return pairs.flatMap(([key, value]) => {
    if (value === undefined || value === false) return [];
    return ['-o', value === true ? `${index}:${key}` : `${index}:${key}=${value}`];
  });
}

// Clusters this process has not stopped yet: torn down when the process exits, whatever happened.
const running = new Set<string>();
process.once('exit', () => {
  for (const id of running) execFileSync(CLUSTER_SH, ['down', '--if-id', id], { stdio: 'ignore' });
});

export async function startCluster(n: number, options: SimHostOptions | ((i: number) => SimHostOptions) = {}): Promise<Cluster> {
  const optionsOf = typeof options === 'function' ? options : () => options;
  const args = ['up', String(n), '--owner', String(process.pid)];
  for (let i = 0; i < n; i++) args.push(...hostArgs(i + 1, optionsOf(i)));
  const up = await execa(CLUSTER_SH, args, { reject: false });
  if (up.exitCode !== 0) throw new Error(`cluster.sh ${args.join(' ')} failed (exit ${up.exitCode}): ${up.stderr.trim()}`);
  const record = JSON.parse(await readFile(`${up.stdout.trim().split('\n').at(-1)}/cluster.json`, 'utf8')) as ClusterRecord;
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
  const link = async (host: SimHost, state: 'up' | 'down') => {
    await execa('ip', ['link', 'set', recordOf(host).veth, state]);
  };

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
    exec: async (host, cmd) => {
      const h = recordOf(host);
      const r = await execa('nsenter', [`--net=/run/netns/${h.netns}`, `--mount=${h.mountNs}`, `--uts=${h.utsNs}`, '--', ...cmd], { reject: false });
      return { stdout: r.stdout, stderr: r.stderr, code: r.exitCode ?? -1 };
    },
    pids: async (host) => {
      const h = recordOf(host);
      const r = await execa('ip', ['netns', 'pids', h.netns], { reject: false });
      const listener = await listenerPid(h);
      return r.stdout
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map(Number)
        .filter((pid) => pid !== listener);
    },
    leftovers: async () => {
      const perHost = await Promise.all(
        cluster.hosts.map(async (host) => {
          const found = await Promise.all((await cluster.pids(host)).map(async (pid) => ({ host: host.name, pid, cmdline: await cmdline(pid) })));
          // A process that exited between `ip netns pids` and reading its cmdline is gone, not left over.
          return found.filter((l): l is Leftover => l.cmdline !== undefined);
        }),
      );
      return perHost.flat();
    },
    waitForNoLeftovers: async (ms = 5000) => {
      const end = Date.now() + ms;
      let left = await cluster.leftovers();
      while (left.length > 0 && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = await cluster.leftovers();
      }
      return left;
    },
    cutLink: (host) => link(host, 'down'),
    restoreLink: (host) => link(host, 'up'),
    stop: async () => {
      if (!running.has(record.id)) return;
      await execa(CLUSTER_SH, ['down', '--if-id', record.id], { reject: false });
      running.delete(record.id);
    },
  };
  return cluster;
}

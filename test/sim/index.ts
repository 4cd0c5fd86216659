/**
 * The simulated cluster (test/sim/cluster.sh) for vitest:
 *
 *   describeCluster('launch on 4 hosts', () => {
 *     let c: Cluster;
 *     beforeAll(async () => { c = await startCluster(4, ['2:devices=4']); });
 *     afterAll(() => c.stop());
 *     it('...', async () => { ...; expect(await c.waitNoLeftovers()).toEqual([]); });
 *   });
 *
 * Without root/ip/unshare/sshd the suite is skipped with a one-line reason, except under CI=true,
 * where a missing prerequisite fails.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, it } from 'vitest';
import type { HostSpec } from '../../src/plan/types.js';

export const CLUSTER_SH = fileURLToPath(new URL('./cluster.sh', import.meta.url));

export interface SimHost {
  index: number;
  name: string;
  address: string;
  netns: string;
  root: string;
  devices: number;
}

export interface Leftover {
  host: string;
  pid: number;
  cmdline: string;
}

export interface Cluster {
  dir: string;
  hosts: SimHost[];
  keyPath: string;
  knownHostsPath: string;
  sshConfigPath: string;
  /** npurun's view of a host: SSH as root with the cluster's key and known_hosts, strict checking. */
  hostSpec(h: SimHost): HostSpec;
  /** Writes a YAML inventory of these hosts (default: all) and returns its path. */
  hostsFile(hosts?: SimHost[], extra?: string): string;
  /**
   * Copies a file where every host sees it and returns that path: hosts share the filesystem like a
   * cluster with shared storage, except their private /tmp, where a checkout (CI's clone) may live.
   */
  share(file: string): string;
  /** Runs a command inside a host's network and mount namespaces. */
  exec(h: SimHost, cmd: string[]): Promise<{ stdout: string; stderr: string; code: number }>;
  /** Every process in any host's namespace that is not sshd. */
  leftovers(): Promise<Leftover[]>;
  /** Polls until no leftovers (or the time is up) and returns what is left. */
  waitNoLeftovers(ms?: number): Promise<Leftover[]>;
  cut(h: SimHost): Promise<void>;
  restore(h: SimHost): Promise<void>;
  /** Kills whatever is left, removes namespaces, links and files. Idempotent. */
  stop(): Promise<void>;
}

export function clusterPrerequisites(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'needs Linux network namespaces' };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (network namespaces, mounts)' };
  for (const tool of ['/usr/sbin/sshd', '/usr/bin/ssh-keygen']) if (!existsSync(tool)) return { ok: false, reason: `needs ${tool} (apt-get install openssh-server)` };
  for (const tool of ['ip', 'unshare', 'nsenter']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return { ok: false, reason: `needs ${tool} (iproute2 / util-linux)` };
    }
  }
  return { ok: true };
}

/** describe() for cluster suites: skipped with the reason outside CI, failing inside CI. */
export function describeCluster(name: string, fn: () => void): void {
  const pre = clusterPrerequisites();
  if (pre.ok) {
    describe(name, fn);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      it('has its prerequisites', () => {
        throw new Error(`simulated cluster unavailable in CI: ${pre.reason}`);
      });
    });
  } else {
    process.stderr.write(`skipping "${name}": simulated cluster unavailable: ${pre.reason}\n`);
    describe.skip(name, fn);
  }
}

export async function startCluster(n: number, opts: string[] = []): Promise<Cluster> {
  const args = ['up', String(n), ...opts.flatMap((o) => ['--opt', o])];
  const r = await execa(CLUSTER_SH, args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`cluster.sh ${args.join(' ')} failed: ${r.stderr}`);
  const dir = r.stdout.trim().split('\n').pop() as string;
  const info = JSON.parse(readFileSync(`${dir}/cluster.json`, 'utf8')) as { key: string; known_hosts: string; ssh_config: string; hosts: SimHost[] };
  const cluster: Cluster = {
    dir,
    hosts: info.hosts,
    keyPath: info.key,
    knownHostsPath: info.known_hosts,
    sshConfigPath: info.ssh_config,
    hostSpec: (h) => ({
      name: h.name,
      address: h.address,
      local: false,
      devices: 'auto',
      ssh: { hostname: h.address, port: 22, user: 'root', identityFiles: [info.key], knownHostsFiles: [info.known_hosts], strictHostKeyChecking: 'yes', useAgent: false },
    }),
    hostsFile: (hosts = info.hosts, extra = '') => {
      const path = `${dir}/hosts-${hosts.map((h) => h.index).join('-')}.yaml`;
      const lines = [
        'defaults:',
        '  user: root',
        `  identity_file: ${info.key}`,
        `  known_hosts: ${info.known_hosts}`,
        'hosts:',
        ...hosts.map((h) => `  - { name: ${h.name}, address: ${h.address} }`),
      ];
      writeFileSync(path, lines.join('\n') + '\n' + extra);
      return path;
    },
    share: (file) => {
      mkdirSync(`${dir}/shared`, { recursive: true });
      const target = `${dir}/shared/${basename(file)}`;
      copyFileSync(file, target);
      return target;
    },
    exec: async (h, cmd) => {
      const res = await execa(CLUSTER_SH, ['exec', String(h.index), ...cmd], { reject: false });
      return { stdout: res.stdout, stderr: res.stderr, code: res.exitCode ?? -1 };
    },
    leftovers: async () => {
      const res = await execa(CLUSTER_SH, ['leftovers'], { reject: false });
      return res.stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => {
          const [host, pid, ...cmd] = l.split(' ');
          return { host: host as string, pid: Number(pid), cmdline: cmd.join(' ').trim() };
        });
    },
    waitNoLeftovers: async (ms = 5000) => {
      const end = Date.now() + ms;
      let left = await cluster.leftovers();
      while (left.length > 0 && Date.now() < end) {
        await new Promise((res) => setTimeout(res, 100));
        left = await cluster.leftovers();
      }
      return left;
    },
    cut: async (h) => void (await execa(CLUSTER_SH, ['cut', String(h.index)])),
    restore: async (h) => void (await execa(CLUSTER_SH, ['restore', String(h.index)])),
    stop: async () => {
      const left = await cluster.leftovers();
      if (left.length > 0) process.stderr.write(`cluster: killing leftovers: ${left.map((l) => `${l.host}:${l.pid} ${l.cmdline}`).join('; ')}\n`);
      await execa(CLUSTER_SH, ['down'], { reject: false });
    },
  };
  return cluster;
}

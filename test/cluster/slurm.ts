/**
 * The Slurm option of the test cluster: a real munged + slurmctld on this machine and one real slurmd
 * inside each simulated host (test/cluster/slurm.sh does it; see its header).
 *
 *   describeSlurm('launch through srun', () => {
 *     let c: Cluster; let s: Slurm;
 *     beforeAll(async () => { c = await startCluster(2); s = await startSlurm(c); }, CLUSTER_START_TIMEOUT);
 *     afterAll(async () => { await s?.stop(); await c?.stop(); });
 *     it('...', async () => { await execa('salloc', ['-N2', ...], { env: s.env }); expect(await s.waitForNoLeftovers()).toEqual([]); });
 *   });
 *
 * Clients reach it with `s.env` (SLURM_CONF). Leftovers are the cluster's minus each host's slurmd.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe } from 'vitest';
import { clusterPrerequisites, describeCluster, type Cluster, type Leftover } from './index.js';

export const SLURM_SH = fileURLToPath(new URL('./slurm.sh', import.meta.url));
export const SLURM_DIR = '/run/npurun-slurm';
const SLURM_COMMANDS = ['slurmctld', 'slurmd', 'munged', 'srun', 'salloc', 'sbatch', 'scontrol', 'scancel', 'squeue'];

export interface Slurm {
  conf: string;
  /** process.env with SLURM_CONF: what every Slurm client (and npurun inside an allocation) needs. */
  env: NodeJS.ProcessEnv;
  /** The cluster's leftovers without each host's slurmd. */
  leftovers(): Promise<Leftover[]>;
  waitForNoLeftovers(ms?: number): Promise<Leftover[]>;
  /** Job ids Slurm still knows as pending, running or completing. */
  activeJobs(): Promise<string[]>;
  /** Polls activeJobs() until there are none or `ms` have passed (a job ends a moment after salloc); the last answer. */
  waitForNoJobs(ms?: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** Why the Slurm daemons and clients cannot run here (the cluster's own prerequisites are checked apart). */
export function slurmMissing(): string | undefined {
  for (const command of SLURM_COMMANDS) {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    } catch {
      return `needs ${command} (apt-get install slurmctld slurmd slurm-client munge)`;
    }
  }
  return undefined;
}

/**
 * describe() for Slurm suites: without the test cluster, exactly as describeCluster (skipped with its
 * reason, failing under CI=true); without Slurm's programs, the same with that reason.
 */
export function describeSlurm(name: string, fn: () => void): void {
  const missing = clusterPrerequisites().ok ? slurmMissing() : undefined;
  if (missing === undefined) {
    describeCluster(name, fn);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      throw new Error(`Slurm unavailable (CI=true makes this a failure): ${missing}`);
    });
  } else {
    process.stderr.write(`skipping "${name}": Slurm unavailable: ${missing}\n`);
    describe.skip(name, fn);
  }
}

function slurmdPids(c: Cluster): Set<number> {
  const pids = new Set<number>();
  for (const h of c.hosts) {
    try {
      pids.add(Number(readFileSync(`${SLURM_DIR}/nodes/${h.name}/slurmd.pid`, 'utf8').trim()));
    } catch {
      // that slurmd is not running
    }
  }
  return pids;
}

/** Polls `list` until it is empty or `ms` have passed; returns the last answer. */
async function untilEmpty<T>(list: () => Promise<T[]>, ms: number): Promise<T[]> {
  const end = Date.now() + ms;
  let items = await list();
  while (items.length > 0 && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    items = await list();
  }
  return items;
}

/** Brings up Slurm on every host of `c` (node name = host name, NodeAddr = its address, gres gpu:910b per device). */
export async function startSlurm(c: Cluster): Promise<Slurm> {
  const specs = c.hosts.map((h) => `${h.name}=${h.address}:${h.devices.length}`);
  const up = await execa(SLURM_SH, ['up', ...specs], { reject: false });
  if (up.exitCode !== 0) {
    await execa(SLURM_SH, ['down'], { reject: false });
    throw new Error(`slurm.sh up failed (exit ${up.exitCode}): ${up.stderr.trim()}`);
  }
  const conf = up.stdout.trim().split('\n').at(-1) as string;
  const env = { ...process.env, SLURM_CONF: conf, NO_COLOR: '1' };
  const slurm: Slurm = {
    conf,
    env,
    leftovers: async () => {
      const daemons = slurmdPids(c);
      return (await c.leftovers()).filter((l) => !daemons.has(l.pid));
    },
    waitForNoLeftovers: (ms = 10_000) => untilEmpty(() => slurm.leftovers(), ms),
    activeJobs: async () => {
      const r = await execa('squeue', ['-h', '-o', '%i', '-t', 'PD,R,CG'], { env, reject: false });
      return r.stdout.split('\n').filter(Boolean);
    },
    waitForNoJobs: (ms = 10_000) => untilEmpty(() => slurm.activeJobs(), ms),
    stop: async () => {
      await execa(SLURM_SH, ['down'], { reject: false });
    },
  };
  return slurm;
}

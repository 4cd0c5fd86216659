import { PassThrough, Writable } from 'node:stream';
import type { HostSpec, JobSpec, RankSpec, RunPlan } from '../../src/plan/types.js';
import type { RankOutputSink } from '../../src/supervise/supervisor.js';

/** A hand-made plan for transport/supervisor tests that do not go through the planner. */
export function manualPlan(
  runId: string,
  hosts: HostSpec[],
  ranks: Omit<RankSpec, 'localRank' | 'nodeRank' | 'role' | 'address' | 'cpus' | 'label'>[],
  job: Partial<JobSpec> = {},
): RunPlan {
  const fullJob: JobSpec = {
    source: 'test',
    profile: 'torch',
    command: [],
    env: {},
    workdir: '/tmp',
    rankDir: 'r{rank}',
    bindCores: false,
    graceSeconds: 2,
    masterPort: 29500,
    remoteDir: `/tmp/npurun/{run_id}`,
    heartbeatTimeoutSeconds: 3,
    maxRestarts: 0,
    hostWaitSeconds: 120,
    ...job,
  };
  const full: RankSpec[] = ranks.map((r, i) => {
    const host = hosts.find((h) => h.name === r.host)!;
    return {
      ...r,
      label: String(r.rank),
      localRank: i,
      nodeRank: hosts.indexOf(host),
      role: 'rank',
      address: host.address,
      cpus: [],
    };
  });
  return {
    runId,
    job: fullJob,
    remoteDir: fullJob.remoteDir.replace(/\{run_id\}/g, runId),
    hosts,
    facts: {},
    ranks: full,
    worldSize: full.length,
    masterAddr: hosts[0]!.address,
    masterPort: 29500,
  };
}

/** Collects every rank's output in memory. */
export class MemorySink implements RankOutputSink {
  readonly text = new Map<string, string>();
  stream(label: string, which: 'stdout' | 'stderr'): Writable {
    const key = `${label}:${which}`;
    this.text.set(key, '');
    const p = new PassThrough();
    p.on('data', (c: Buffer) => this.text.set(key, this.text.get(key) + c.toString()));
    return p;
  }
}

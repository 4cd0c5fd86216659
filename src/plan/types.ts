import type { HostFacts } from '../devices/types.js';
import type { RankTable } from '../ranktable/types.js';

export type ProfileName = 'mindspore' | 'msrun' | 'tensorflow' | 'torch';

/** What a restart does about a host it cannot have: wait for it, put a spare in its place, or go on without it. */
export type HostLossPolicy = 'wait' | 'spare' | 'shrink';

/** How a launch reaches its hosts: SSH (a hosts file), srun inside a Slurm allocation, or this machine. */
export type Engine = 'ssh' | 'slurm' | 'local';

export type { HostSpec, SshSettings } from '../inventory/types.js';
import type { HostSpec } from '../inventory/types.js';

/** The checkpoint policy as resolveJob fills it: every default applied there, once. */
export interface CheckpointPolicy {
  /** Save every N epochs or steps. */
  interval?: number;
  unit: 'epoch' | 'step';
  keepMax: number;
  masterOnly: boolean;
  /** Directory, relative to the rank's working dir unless absolute ("ckpt_{rank}" by default). */
  dir: string;
  /** File pattern, MindSpore's "{prefix}-{epoch}_{step}.ckpt" by default. */
  pattern: string;
}

/** A job, merged from the job file and the flags (flags win). */
export interface JobSpec {
  /** Where the job came from, for messages ("job.yaml", "flags"). */
  source: string;
  name?: string;
  profile: ProfileName;
  /** The program and its arguments, never joined into a shell string. */
  command: string[];
  /** Device choice applied to every host: undefined = the host's own choice (inventory or auto). */
  devices?: number[];
  nprocPerNode?: number;
  /** Extra environment for every rank. */
  env: Record<string, string>;
  /** Base directory on every host (default: the launching directory). */
  workdir: string;
  /** Per-rank working dir under workdir; placeholders {rank} {local_rank} {device} {host}. Default "train_parallel{rank}". */
  rankDir: string;
  bindCores: boolean;
  /** Seconds between SIGTERM and SIGKILL when stopping ranks. */
  graceSeconds: number;
  masterPort: number;
  /** Rank table given by the user instead of generated. */
  rankTableFile?: string;
  /** Directory on every host where npurun puts the rank table and its records ("/tmp/npurun-{uid}/{run_id}" by default: {uid} is the uid npurun logs in as, so the directory is private to that user). */
  remoteDir: string;
  checkpoint?: CheckpointPolicy;
  /** Seconds the per-host guard waits without a heartbeat before it stops the ranks (cut network). */
  heartbeatTimeoutSeconds: number;
  /** No progress from any rank for this long is a hang: stacks collected, run stopped. Off when absent. */
  hangTimeoutSeconds?: number;
  /** A line matching this (JavaScript regex) is progress; default: the model zoo's epoch/iter/step lines. */
  progressPattern?: string;
  /** Relaunches after a failure (a rank failed, a host was lost, a hang), from the newest complete checkpoint. */
  maxRestarts: number;
  /** Before a restart, seconds to wait for hosts that cannot be reached or are not ready. */
  hostWaitSeconds: number;
  /** `--on-host-loss` / `on_host_loss:` as given; unset: `spare` when the hosts file lists spares, else `wait`. */
  onHostLoss?: HostLossPolicy;
  /** Job-file `simulate: N`: run on the local host with N simulated NPUs (demo, CI). */
  simulate?: number;
  /** Argument appended on `--resume`, `{path}` replaced by the checkpoint (e.g. "--pre_trained={path}"). */
  resumeArg?: string;
  /** Job-file `resume_map`: how ranks map onto an earlier run's per-rank checkpoints when the world changed. */
  resumeMap?: 'error' | 'rank0' | 'same-rank';
  /** Job-file `eval.dataset_size`: samples in the eval set, to tell a padded sampler's repeats. */
  evalDatasetSize?: number;
  /** Job-file `hosts: FILE`: the inventory to use when --hosts is not given (relative to the job file). */
  hostsFile?: string;
  /** Job-file `engine:` (--engine overrides): how hosts are reached. */
  engine?: Engine;
}

/** Everything about one process npurun starts. */
export interface RankSpec {
  /** Global rank (for msrun's scheduler: -1). */
  rank: number;
  /** Label used in prefixes and files: "0", "1", ... or "sched". */
  label: string;
  localRank: number;
  nodeRank: number;
  role: 'rank' | 'scheduler';
  host: string; // HostSpec.name
  address: string; // HostSpec.address
  /** Physical device id, or null for processes without a device (msrun scheduler, CPU-only). */
  deviceId: number | null;
  /** CPU ids to pin to ([] = no binding). */
  cpus: number[];
  /** Absolute working directory on the host. */
  cwd: string;
  argv: string[];
  /** Complete extra environment for this rank (added on top of the host's login environment). */
  env: Record<string, string>;
}

export interface RunPlan {
  runId: string;
  job: JobSpec;
  hosts: HostSpec[];
  facts: Record<string, HostFacts>; // by host name
  ranks: RankSpec[];
  worldSize: number;
  /** Generated or validated rank table (profiles that need one), and where it lives on every host. */
  rankTable?: RankTable;
  rankTablePath?: string;
  masterAddr: string;
  masterPort: number;
  /** The job's remote dir with {run_id} filled in: the run's private directory on every host. */
  remoteDir: string;
}

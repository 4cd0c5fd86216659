import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { NpurunError } from '../errors.js';
import type { HostSpec, SlurmNode } from '../inventory/types.js';
import { slurmStepDevices } from '../inventory/slurm.js';
import { AgentClient, agentCommand } from './agent-client.js';
import { AgentTransport } from './agent-transport.js';
import { trace } from '../trace.js';
import type { AgentHello } from './types.js';

/**
 * A node of a Slurm allocation: the same agent as over SSH, started by srun as a one-task step on that
 * node. One srun per node (not one step of N tasks) because the agent's protocol needs a stdin and a
 * stdout of its own per host: srun fans one stdin out to every task and merges their stdout, and its
 * per-task --input/--output files are not pipes npurun could answer on. N sruns cost N steps, each
 * ~0.17 s on the test cluster, started at once like N SSH logins; no SSH anywhere.
 */

/**
 * Variables describing the agent's own one-task step: they would lie to every rank (every rank would
 * read SLURM_PROCID=0 of 1), so the agent drops them before it starts. The job's (SLURM_JOB_*) stay.
 */
const STEP_LAYOUT = [
  'SLURM_PROCID',
  'SLURM_LOCALID',
  'SLURM_NODEID',
  'SLURM_NTASKS',
  'SLURM_NPROCS',
  'SLURM_NNODES',
  'SLURM_NODELIST',
  'SLURM_TASKS_PER_NODE',
  'SLURM_GTIDS',
  'SLURM_STEP_NUM_TASKS',
  'SLURM_STEP_NUM_NODES',
  'SLURM_STEP_TASKS_PER_NODE',
  'SLURM_STEP_NODELIST',
  'SLURM_TASK_PID',
  'SLURM_CPU_BIND',
  'SLURM_CPU_BIND_LIST',
  'SLURM_CPU_BIND_TYPE',
  'SLURM_CPU_BIND_VERBOSE',
];

/** The srun argv that starts one node's agent (everything after `srun`). */
export function srunArgs(node: SlurmNode, python?: string): string[] {
  return [
    `--jobid=${node.jobId}`,
    '--nodes=1',
    '--ntasks=1',
    `--nodelist=${node.node}`,
    // Beside other steps of the job (the batch step, another launch): the agent needs no CPUs of its own.
    '--overlap',
    // Frames are binary: srun's default line buffering would hold a frame until a newline byte.
    '--unbuffered',
    // Ranks are placed by npurun (--bind-cores), not pinned to the one CPU of a one-task step.
    '--cpu-bind=none',
    '--job-name=npurun-agent',
    '--quiet',
    'sh',
    '-c',
    `unset ${STEP_LAYOUT.join(' ')}; ${agentCommand(python)}`,
  ];
}

/** How long a closed agent's srun may take to end before it is killed (Slurm then cleans the step). */
const SRUN_EXIT_MS = 5000;

export class SrunTransport extends AgentTransport {
  private constructor(
    host: HostSpec,
    agent: AgentClient,
    hello: AgentHello,
    private readonly child: ChildProcess,
    private readonly exited: Promise<unknown>,
  ) {
    super(host, agent, hello);
  }

  /**
   * `liveness`: what SSH's keepalive is to the SSH transport (the same interval and count): a node that
   * goes down or off the network leaves srun waiting, so the agent is asked a no-op (a listing, no
   * process) every interval, and after interval x count without an answer the host is lost and its srun
   * killed (the agent there stops its ranks once heartbeats stop).
   */
  static async connect(
    host: HostSpec,
    node: SlurmNode,
    liveness: { keepaliveIntervalMs?: number; keepaliveCountMax?: number; agentStartTimeoutMs?: number } = {},
  ): Promise<SrunTransport> {
    const startTimeoutMs = liveness.agentStartTimeoutMs ?? 120_000;
    // Detached, as the local agent: a Ctrl-C reaches npurun, which stops the ranks with the grace
    // period; srun itself would cancel the step on a second Ctrl-C. node:child_process, not execa
    // (~70 ms to import), as for the local agent.
    const child = spawn('srun', srunArgs(node, process.env.NPURUN_PYTHON || undefined), {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let spawnError: string | undefined;
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err.code === 'ENOENT' ? 'srun not found on PATH' : err.message;
    });
    const exited = once(child, 'close').catch(() => undefined);
    const { stdin, stdout, stderr } = child;
    if (!stdin || !stdout || !stderr) throw new NpurunError('runtime', `host ${host.name}: cannot open pipes to srun`);
    stdin.on('error', () => undefined);
    const agent = new AgentClient(stdin, stdout, { name: host.name }, stderr);
    let hello: AgentHello;
    try {
      hello = await agent.start(startTimeoutMs);
    } catch (err) {
      child.kill('SIGKILL');
      if (spawnError !== undefined)
        throw new NpurunError('not-ready', `host ${host.name}: cannot run srun: ${spawnError}`);
      throw err;
    }
    trace(`srun: ${host.name}: agent up`);
    const transport = new SrunTransport(host, agent, hello, child, exited);
    void exited.then(() => transport.lost('srun of its agent ended'));
    transport.watch(liveness.keepaliveIntervalMs ?? 1000, liveness.keepaliveCountMax ?? 3);
    await transport.adoptStepDevices();
    return transport;
  }

  /**
   * Devices Slurm gave this job on this node (the Ascend plugin's SLURM_STEP_NPUS or
   * ASCEND_VISIBLE_DEVICES, or a gpu-typed gres's SLURM_STEP_GPUS, as the agent's step sees them)
   * become the host's devices: the plan then uses exactly those. None given: the probe's free devices.
   */
  private async adoptStepDevices(): Promise<void> {
    const r = await this.exec(
      'printf "%s\\n" "${SLURM_STEP_NPUS-}" "${ASCEND_VISIBLE_DEVICES-}" "${SLURM_STEP_GPUS-}"',
    );
    const [npus = '', ascend = '', gpus = ''] = r.stdout.split('\n');
    const devices = slurmStepDevices({ npus, ascend, gpus }, `host ${this.host.name}`);
    if (devices && this.host.devices === 'auto') this.host.devices = devices;
  }

  private watchTimer: NodeJS.Timeout | undefined;

  private watch(intervalMs: number, countMax: number): void {
    let lastAnswer = Date.now();
    let asking = false;
    this.watchTimer = setInterval(() => {
      if (Date.now() - lastAnswer > intervalMs * countMax) {
        clearInterval(this.watchTimer);
        this.lost(
          `no answer from its agent through srun for ${((intervalMs * countMax) / 1000).toFixed(0)} s (node down or cut off?)`,
        );
        this.child.kill('SIGKILL');
        return;
      }
      if (asking) return;
      asking = true;
      this.listDir('/nonexistent/npurun-liveness')
        .then(() => (lastAnswer = Date.now()))
        .catch(() => undefined)
        .finally(() => (asking = false));
    }, intervalMs);
    this.watchTimer.unref();
  }

  override async close(): Promise<void> {
    clearInterval(this.watchTimer);
    await super.close();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), SRUN_EXIT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

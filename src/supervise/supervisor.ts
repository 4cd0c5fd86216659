import { posix } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { RankSpec, RunPlan } from '../plan/types.js';
import type { AgentRun, HostTransport, RankEnd, RankProcess } from '../transport/types.js';
import { describeEnd, rankOutcome, runOutcome, type RankOutcome, type RunOutcome } from './outcome.js';

export { describeEnd, exitCodeOf, type RankCause, type RankOutcome, type RunOutcome } from './outcome.js';

/** Where each rank's output goes (the run recorder); pipe() into these Writables carries backpressure. */
export interface RankOutputSink {
  stream(label: string, which: 'stdout' | 'stderr'): Writable;
}

export type SupervisorEvent =
  | { kind: 'rank-started'; label: string; host: string; pid?: number }
  | { kind: 'rank-ended'; outcome: RankOutcome }
  | { kind: 'stopping'; reason: string; graceSeconds: number }
  | { kind: 'host-lost'; host: string; reason: string }
  | { kind: 'escalate'; hosts: string[] }
  | { kind: 'suspend-refused' };

export interface SuperviseOptions {
  graceSeconds: number;
  /** Seconds an agent waits before SIGKILL once it loses the launcher. */
  orphanGraceSeconds: number;
  sink: RankOutputSink;
  onEvent?: (event: SupervisorEvent) => void;
  /** Handle SIGINT/SIGTERM/SIGHUP/SIGTSTP of this process (the CLI does; tests may not). */
  handleSignals?: boolean;
}

/** Where the agent records the rank's pids on its host: `npurun ps/kill` read them. */
export function pidFilePath(remoteDir: string, label: string): string {
  return posix.join(remoteDir, 'pids', `${label}.json`);
}

export function remoteDirOf(plan: RunPlan): string {
  return plan.job.remoteDir.replace(/\{run_id\}/g, plan.runId);
}

/** The run's state as supervision goes: what the rules in outcome.ts need to judge each rank's end. */
class RunState {
  readonly outcomes: RankOutcome[] = [];
  rootCause: RankOutcome | undefined;
  stopReason: string | undefined;
  interruptedBy: string | undefined;

  constructor(private readonly emit: (e: SupervisorEvent) => void) {}

  record(spec: RankSpec, end: RankEnd | undefined, message?: string): RankOutcome {
    const outcome = rankOutcome(spec, end, { stopping: this.stopReason !== undefined, interrupted: this.interruptedBy !== undefined }, message);
    if (outcome.rootCause) {
      if (this.rootCause) outcome.rootCause = false;
      else this.rootCause = outcome;
    }
    this.outcomes.push(outcome);
    this.emit({ kind: 'rank-ended', outcome });
    return outcome;
  }
}

/** Stops every host's ranks once: SIGTERM through the agents, SIGKILL after the grace period. */
class Stopper {
  private escalation: NodeJS.Timeout | undefined;

  constructor(
    private readonly transports: Map<string, HostTransport>,
    private readonly state: RunState,
    private readonly graceSeconds: number,
    private readonly emit: (e: SupervisorEvent) => void,
  ) {}

  stop(reason: string): void {
    if (this.state.stopReason !== undefined) return;
    this.state.stopReason = reason;
    this.emit({ kind: 'stopping', reason, graceSeconds: this.graceSeconds });
    for (const t of this.transports.values()) void t.stopAll(this.graceSeconds, reason);
    // The agents enforce the grace period themselves; this is the launcher's own backstop.
    this.escalation = setTimeout(() => this.kill(), (this.graceSeconds + 3) * 1000);
    this.escalation.unref();
  }

  kill(): void {
    this.emit({ kind: 'escalate', hosts: [...this.transports.keys()] });
    for (const t of this.transports.values()) void t.killAll('npurun stopped waiting');
  }

  dispose(): void {
    if (this.escalation) clearTimeout(this.escalation);
  }
}

/** SIGINT/SIGTERM/SIGHUP stop the run (a second one kills at once); SIGTSTP is refused. */
function handleProcessSignals(state: RunState, stopper: Stopper, emit: (e: SupervisorEvent) => void): () => void {
  const onSignal = (sig: NodeJS.Signals) => {
    if (state.interruptedBy) {
      stopper.kill();
      return;
    }
    state.interruptedBy = sig;
    stopper.stop(`npurun received ${sig}`);
  };
  // Suspended, npurun would stop sending heartbeats and every agent would stop its ranks: refuse.
  const onSuspend = () => emit({ kind: 'suspend-refused' });
  const stops: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of stops) process.on(s, onSignal);
  process.on('SIGTSTP', onSuspend);
  return () => {
    for (const s of stops) process.off(s, onSignal);
    process.off('SIGTSTP', onSuspend);
  };
}

/** Pipes one rank's output into the sink and waits for its end and for the sink to take everything. */
async function followRank(spec: RankSpec, proc: RankProcess, sink: RankOutputSink): Promise<RankEnd> {
  const out = sink.stream(spec.label, 'stdout');
  const err = sink.stream(spec.label, 'stderr');
  proc.stdout.pipe(out);
  proc.stderr.pipe(err);
  const end = await proc.ended;
  await Promise.all([finished(out).catch(() => {}), finished(err).catch(() => {})]);
  return end;
}

/**
 * Starts every rank of the plan, one agent per host, streams output into the sink and waits for all of
 * them. Fail-fast: the first rank to end badly is the root cause and every other rank, on every host,
 * is stopped. Ranks that end after the root cause are victims, never reported as the cause.
 */
export async function supervise(plan: RunPlan, transports: Map<string, HostTransport>, opts: SuperviseOptions): Promise<RunOutcome> {
  const emit = opts.onEvent ?? (() => {});
  const state = new RunState(emit);
  const stopper = new Stopper(transports, state, opts.graceSeconds, emit);
  const unhook = opts.handleSignals ? handleProcessSignals(state, stopper, emit) : () => {};
  for (const [name, t] of transports) t.onLost((reason) => emit({ kind: 'host-lost', host: name, reason }));

  const ended = (spec: RankSpec, end: RankEnd | undefined, message?: string) => {
    const outcome = state.record(spec, end, message);
    if (outcome.failed) stopper.stop(`rank ${spec.label} on ${spec.host} ${describeEnd(outcome)}`);
  };

  const runHost = async (host: string, specs: RankSpec[]): Promise<void> => {
    const transport = transports.get(host);
    if (!transport) throw new Error(`no transport for host ${host}`);
    if (state.stopReason !== undefined) {
      for (const spec of specs) ended(spec, { code: null, signal: null, lost: false }, 'not started: the run was already stopping');
      return;
    }
    const run: AgentRun = {
      runId: plan.runId,
      host,
      runDir: remoteDirOf(plan),
      heartbeatTimeout: plan.job.heartbeatTimeoutSeconds,
      orphanGrace: opts.orphanGraceSeconds,
    };
    let procs: RankProcess[];
    try {
      procs = await transport.startRanks(run, specs.map((s) => ({ label: s.label, argv: s.argv, env: s.env, cwd: s.cwd, cpus: s.cpus, device: s.deviceId })));
    } catch (err) {
      for (const spec of specs) ended(spec, undefined, err instanceof Error ? err.message : String(err));
      return;
    }
    if (state.stopReason !== undefined) void transport.stopAll(opts.graceSeconds, state.stopReason);
    await Promise.all(
      specs.map(async (spec, i) => {
        const proc = procs[i] as RankProcess;
        if (proc.startError === undefined) emit({ kind: 'rank-started', label: spec.label, host: spec.host, ...(proc.pid !== undefined ? { pid: proc.pid } : {}) });
        const end = await followRank(spec, proc, opts.sink);
        ended(spec, proc.startError === undefined ? end : undefined, proc.startError);
      }),
    );
  };

  const byHost = new Map<string, RankSpec[]>();
  for (const r of plan.ranks) byHost.set(r.host, [...(byHost.get(r.host) ?? []), r]);
  try {
    await Promise.all([...byHost].map(([host, specs]) => runHost(host, specs)));
  } finally {
    stopper.dispose();
    unhook();
  }
  return runOutcome(state.outcomes, state.rootCause, state.interruptedBy);
}

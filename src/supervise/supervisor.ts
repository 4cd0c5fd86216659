import { posix } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { RankSpec, RunPlan } from '../plan/types.js';
import type { AgentRun, HostTransport, RankEnd, RankProcess } from '../transport/types.js';
import { blameHang, describeEnd, rankOutcome, runOutcome, type RankOutcome, type RunOutcome } from './outcome.js';
import { trace } from '../trace.js';

export {
  describeEnd,
  exitCodeOf,
  HANG_EXIT_CODE,
  type RankCause,
  type RankOutcome,
  type RunOutcome,
} from './outcome.js';

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

/** What the launcher can do to a run in progress besides signals (hang detection uses it). */
export interface RunControl {
  /** Marks the run as stopping (ranks ending from now on are not root causes) without stopping them yet. */
  hold(reason: string): void;
  /** Stops every rank on every host (SIGTERM, SIGKILL after the grace period). */
  stop(reason: string): void;
  /** Blames these ranks for a hang; the first is the run's root cause. */
  blameHang(labels: string[], why: string): void;
  /** Labels of the ranks still running. */
  running(): string[];
  /** The run's outcome is judged only once this settles (hang detection blames ranks after they end). */
  until(work: Promise<void>): void;
}

export interface SuperviseOptions {
  graceSeconds: number;
  /** Seconds an agent waits before SIGKILL once it loses the launcher. */
  orphanGraceSeconds: number;
  sink: RankOutputSink;
  onEvent?: (event: SupervisorEvent) => void;
  /** Handle SIGINT/SIGTERM/SIGHUP/SIGTSTP of this process (the CLI does; tests may not). */
  handleSignals?: boolean;
  /** Receives the run's control once ranks are being started. */
  control?: (ctl: RunControl) => void;
}

/** Where the agent records the rank's pids on its host: `npurun ps/kill` read them. */
export function pidFilePath(remoteDir: string, label: string): string {
  return posix.join(remoteDir, 'pids', `${label}.json`);
}

/** The run's state as supervision goes: what the rules in outcome.ts need to judge each rank's end. */
class RunState {
  readonly outcomes: RankOutcome[] = [];
  rootCause: RankOutcome | undefined;
  stopReason: string | undefined;
  interruptedBy: string | undefined;

  constructor(private readonly emit: (e: SupervisorEvent) => void) {}

  /** Ranks blamed for a hang, and why. */
  readonly blamed = new Map<string, string>();

  record(spec: RankSpec, end: RankEnd | undefined, message?: string): RankOutcome {
    const outcome = rankOutcome(
      spec,
      end,
      { stopping: this.stopReason !== undefined, interrupted: this.interruptedBy !== undefined },
      message,
    );
    if (outcome.rootCause) {
      if (this.rootCause) outcome.rootCause = false;
      else this.rootCause = outcome;
    }
    this.outcomes.push(outcome);
    if (this.blamed.has(outcome.label)) this.blame(outcome);
    else this.emit({ kind: 'rank-ended', outcome });
    return outcome;
  }

  /** A hang's culprit: the first one blamed is the root cause (unless a rank failed before the hang). */
  blame(outcome: RankOutcome): void {
    if (outcome.cause === 'hang') return;
    blameHang(outcome, this.blamed.get(outcome.label) as string);
    if (this.rootCause) outcome.rootCause = false;
    else this.rootCause = outcome;
    this.emit({ kind: 'rank-ended', outcome });
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

  private sent = false;

  /** The run is stopping from now on, but ranks are left to end by themselves (stacks being taken). */
  hold(reason: string): void {
    if (this.state.stopReason !== undefined) return;
    this.state.stopReason = reason;
    this.emit({ kind: 'stopping', reason, graceSeconds: this.graceSeconds });
  }

  stop(reason: string): void {
    this.hold(reason);
    if (this.sent) return;
    this.sent = true;
    for (const t of this.transports.values()) void t.stopAll(this.graceSeconds, this.state.stopReason);
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
export async function supervise(
  plan: RunPlan,
  transports: Map<string, HostTransport>,
  opts: SuperviseOptions,
): Promise<RunOutcome> {
  const emit = opts.onEvent ?? (() => {});
  const state = new RunState(emit);
  const stopper = new Stopper(transports, state, opts.graceSeconds, emit);
  const unhook = opts.handleSignals ? handleProcessSignals(state, stopper, emit) : () => {};
  for (const [name, t] of transports) t.onLost((reason) => emit({ kind: 'host-lost', host: name, reason }));

  const live = new Set(plan.ranks.map((r) => r.label));
  const pending: Promise<void>[] = [];
  opts.control?.({
    hold: (reason) => stopper.hold(reason),
    stop: (reason) => stopper.stop(reason),
    running: () => [...live],
    until: (work) => void pending.push(work.catch(() => undefined)),
    blameHang: (labels, why) => {
      for (const label of labels) state.blamed.set(label, why);
      for (const o of state.outcomes) if (state.blamed.has(o.label)) state.blame(o);
    },
  });
  const ended = (spec: RankSpec, end: RankEnd | undefined, message?: string) => {
    live.delete(spec.label);
    const outcome = state.record(spec, end, message);
    if (outcome.failed) stopper.stop(`rank ${spec.label} on ${spec.host} ${describeEnd(outcome)}`);
  };

  const runHost = async (host: string, specs: RankSpec[]): Promise<void> => {
    const transport = transports.get(host);
    if (!transport) throw new Error(`no transport for host ${host}`);
    if (state.stopReason !== undefined) {
      for (const spec of specs)
        ended(spec, { code: null, signal: null, lost: false }, 'not started: the run was already stopping');
      return;
    }
    const run: AgentRun = {
      runId: plan.runId,
      host,
      runDir: plan.remoteDir,
      heartbeatTimeout: plan.job.heartbeatTimeoutSeconds,
      orphanGrace: opts.orphanGraceSeconds,
    };
    let procs: RankProcess[];
    try {
      trace(`supervise: ${host}: starting ranks`);
      procs = await transport.startRanks(
        run,
        specs.map((s) => ({ label: s.label, argv: s.argv, env: s.env, cwd: s.cwd, cpus: s.cpus, device: s.deviceId })),
      );
      trace(`supervise: ${host}: ranks started`);
    } catch (err) {
      for (const spec of specs) ended(spec, undefined, err instanceof Error ? err.message : String(err));
      return;
    }
    if (state.stopReason !== undefined) void transport.stopAll(opts.graceSeconds, state.stopReason);
    await Promise.all(
      specs.map(async (spec, i) => {
        const proc = procs[i] as RankProcess;
        if (proc.startError === undefined)
          emit({
            kind: 'rank-started',
            label: spec.label,
            host: spec.host,
            ...(proc.pid !== undefined ? { pid: proc.pid } : {}),
          });
        const end = await followRank(spec, proc, opts.sink);
        ended(spec, proc.startError === undefined ? end : undefined, proc.startError);
      }),
    );
  };

  const byHost = new Map<string, RankSpec[]>();
  for (const r of plan.ranks) byHost.set(r.host, [...(byHost.get(r.host) ?? []), r]);
  try {
    await Promise.all([...byHost].map(([host, specs]) => runHost(host, specs)));
    await Promise.all(pending);
    trace('supervise: every rank ended');
  } finally {
    stopper.dispose();
    unhook();
  }
  return runOutcome(state.outcomes, state.rootCause, state.interruptedBy);
}

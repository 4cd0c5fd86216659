import { constants } from 'node:os';
import { posix } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { RankSpec, RunPlan } from '../plan/types.js';
import type { HostTransport, RankEnd, RankProcess } from '../transport/types.js';

/** Where each rank's output goes (the run recorder); pipe() into these Writables carries backpressure. */
export interface RankOutputSink {
  stream(label: string, which: 'stdout' | 'stderr'): Writable;
}

export type RankCause = 'exited' | 'signal' | 'stopped' | 'lost' | 'failed-to-start';

export interface RankOutcome {
  label: string;
  rank: number;
  host: string;
  deviceId: number | null;
  code: number | null;
  signal: string | null;
  /** exited: ended on its own; signal: killed by a signal npurun did not send; stopped: stopped by npurun
   * after the root cause; lost: its host went away; failed-to-start: never ran. */
  cause: RankCause;
  rootCause: boolean;
  message?: string;
  endedAt: string;
}

export interface RunOutcome {
  status: 'succeeded' | 'failed' | 'interrupted';
  exitCode: number;
  rootCause?: RankOutcome;
  /** The signal npurun received, when interrupted. */
  interruptedBy?: string;
  ranks: RankOutcome[];
}

export type SupervisorEvent =
  | { kind: 'rank-started'; label: string; host: string }
  | { kind: 'rank-ended'; outcome: RankOutcome }
  | { kind: 'stopping'; reason: string; graceSeconds: number }
  | { kind: 'host-lost'; host: string; reason: string }
  | { kind: 'escalate'; labels: string[] };

export interface SuperviseOptions {
  graceSeconds: number;
  /** Seconds a guard waits before SIGKILL once it loses the launcher. */
  orphanGraceSeconds: number;
  sink: RankOutputSink;
  onEvent?: (event: SupervisorEvent) => void;
  /** Handle SIGINT/SIGTERM/SIGHUP of this process (the CLI does; tests may not). */
  handleSignals?: boolean;
}

/** Where the guard records the rank's pids on its host: `npurun ps/kill` read them. */
export function pidFilePath(remoteDir: string, label: string): string {
  return posix.join(remoteDir, 'pids', `${label}.json`);
}

export function exitCodeOf(outcome: RankOutcome): number {
  if (outcome.cause === 'lost' || outcome.cause === 'failed-to-start') return 3;
  if (outcome.code !== null && outcome.code !== 0) return outcome.code;
  if (outcome.signal) return 128 + (constants.signals[outcome.signal as keyof typeof constants.signals] ?? 0);
  return 1;
}

/**
 * Starts every rank of the plan, streams its output into the sink and waits for all of them.
 * Fail-fast: the first rank to end badly is the root cause and every other rank, on every host, is
 * stopped (SIGTERM through its guard, SIGKILL after the grace period). Ranks that die after the root
 * cause are victims and never reported as the cause.
 */
export async function supervise(plan: RunPlan, transports: Map<string, HostTransport>, opts: SuperviseOptions): Promise<RunOutcome> {
  const emit = opts.onEvent ?? (() => {});
  const running = new Map<string, RankProcess>();
  const outcomes: RankOutcome[] = [];
  let rootCause: RankOutcome | undefined;
  let stopping = false;
  let interruptedBy: string | undefined;
  let escalation: NodeJS.Timeout | undefined;

  const stopAll = (reason: string) => {
    if (stopping) return;
    stopping = true;
    emit({ kind: 'stopping', reason, graceSeconds: opts.graceSeconds });
    for (const p of running.values()) p.stop(opts.graceSeconds);
    // The guards enforce the grace period themselves; this is the launcher's own backstop.
    escalation = setTimeout(() => {
      emit({ kind: 'escalate', labels: [...running.keys()] });
      for (const p of running.values()) p.kill();
    }, (opts.graceSeconds + 3) * 1000);
    escalation.unref();
  };

  const record = (spec: RankSpec, end: RankEnd | undefined, message?: string) => {
    let cause: RankCause;
    if (!end) cause = 'failed-to-start';
    else if (end.lost) cause = 'lost';
    else if (end.code === 0) cause = 'exited';
    else if (stopping) cause = 'stopped';
    else cause = end.signal ? 'signal' : 'exited';
    const failed = cause === 'failed-to-start' || cause === 'lost' || cause === 'signal' || (cause === 'exited' && end?.code !== 0);
    const outcome: RankOutcome = {
      label: spec.label,
      rank: spec.rank,
      host: spec.host,
      deviceId: spec.deviceId,
      code: end?.code ?? null,
      signal: end?.signal ?? null,
      cause,
      rootCause: false,
      endedAt: new Date().toISOString(),
      ...(message ? { message } : {}),
    };
    if (failed && !rootCause && !interruptedBy) {
      outcome.rootCause = true;
      rootCause = outcome;
    }
    outcomes.push(outcome);
    emit({ kind: 'rank-ended', outcome });
    if (failed) stopAll(`rank ${spec.label} on ${spec.host} ${describeEnd(outcome)}`);
    // A rank that finished cleanly while others run on is normal (e.g. msrun's scheduler): keep going.
  };

  const onSignal = (sig: NodeJS.Signals) => {
    if (interruptedBy) {
      // Second signal: no more patience.
      for (const p of running.values()) p.kill();
      return;
    }
    interruptedBy = sig;
    stopAll(`npurun received ${sig}`);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  if (opts.handleSignals) for (const s of signals) process.on(s, onSignal);

  for (const [name, t] of transports) {
    t.onLost((reason) => {
      emit({ kind: 'host-lost', host: name, reason });
    });
  }

  const runOne = async (spec: RankSpec): Promise<void> => {
    const transport = transports.get(spec.host);
    if (!transport) throw new Error(`no transport for host ${spec.host}`);
    if (stopping) {
      record(spec, { code: null, signal: null, lost: false }, 'not started: the run was already stopping');
      return;
    }
    let proc: RankProcess;
    try {
      proc = await transport.startRank({
        runId: plan.runId,
        label: spec.label,
        argv: spec.argv,
        env: spec.env,
        cwd: spec.cwd,
        cpus: spec.cpus,
        pidFile: pidFilePath(remoteDirOf(plan), spec.label),
        heartbeatTimeout: plan.job.heartbeatTimeoutSeconds,
        orphanGrace: opts.orphanGraceSeconds,
      });
    } catch (err) {
      record(spec, undefined, err instanceof Error ? err.message : String(err));
      return;
    }
    running.set(spec.label, proc);
    emit({ kind: 'rank-started', label: spec.label, host: spec.host });
    if (stopping) proc.stop(opts.graceSeconds);
    const out = opts.sink.stream(spec.label, 'stdout');
    const err = opts.sink.stream(spec.label, 'stderr');
    proc.stdout.pipe(out);
    proc.stderr.pipe(err);
    const end = await proc.ended;
    // Output is complete once both sink streams have taken everything the rank wrote.
    await Promise.all([finished(out).catch(() => {}), finished(err).catch(() => {})]);
    running.delete(spec.label);
    record(spec, end);
  };

  try {
    await Promise.all(plan.ranks.map(runOne));
  } finally {
    if (escalation) clearTimeout(escalation);
    if (opts.handleSignals) for (const s of signals) process.off(s, onSignal);
  }

  outcomes.sort((a, b) => a.rank - b.rank);
  if (interruptedBy) {
    return { status: 'interrupted', exitCode: 128 + (constants.signals[interruptedBy as keyof typeof constants.signals] ?? 2), interruptedBy, ranks: outcomes };
  }
  if (rootCause) return { status: 'failed', exitCode: exitCodeOf(rootCause), rootCause, ranks: outcomes };
  return { status: 'succeeded', exitCode: 0, ranks: outcomes };
}

export function remoteDirOf(plan: RunPlan): string {
  return plan.job.remoteDir.replace(/\{run_id\}/g, plan.runId);
}

export function describeEnd(o: RankOutcome): string {
  switch (o.cause) {
    case 'failed-to-start':
      return `failed to start${o.message ? `: ${o.message}` : ''}`;
    case 'lost':
      return 'was lost with its host';
    case 'stopped':
      return `was stopped by npurun (${o.signal ?? `exit ${o.code}`})`;
    case 'signal':
      return `was killed by ${o.signal}`;
    case 'exited':
      return `exited with code ${o.code}`;
  }
}

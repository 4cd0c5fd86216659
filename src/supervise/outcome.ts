import { constants } from 'node:os';
import { EXIT, signalExitCode } from '../errors.js';
import type { RankSpec } from '../plan/types.js';
import type { RankEnd } from '../transport/types.js';

/**
 * How a rank ended, judged: exited (on its own), signal (killed by a signal npurun did not send),
 * stopped (by npurun after the root cause or an interrupt), lost (its host, connection or agent went
 * away, or the agent stopped it for want of heartbeats), failed-to-start (never ran), hang (the rank
 * blamed for a hang: it stopped making progress first, or its stack is the odd one out).
 */
export type RankCause = 'exited' | 'signal' | 'stopped' | 'lost' | 'failed-to-start' | 'hang';

/** npurun's exit code for a run stopped because it hung (as timeout(1) exits). */
export const HANG_EXIT_CODE = 124;

/** The one record of a rank's end: supervision, the failure report and run.json all use it. */
export interface RankOutcome {
  label: string;
  rank: number;
  host: string;
  deviceId: number | null;
  code: number | null;
  signal: string | null;
  cause: RankCause;
  /** The rank ended badly on its own account (or its host was lost). */
  failed: boolean;
  /** The first failure of the run: the one that stopped the others. */
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

/** What the run was doing when a rank ended. */
export interface RunMoment {
  /** npurun was already stopping every rank (after a failure or an interrupt). */
  stopping: boolean;
  interrupted: boolean;
}

function causeOf(end: RankEnd | undefined, moment: RunMoment): RankCause {
  if (!end) return 'failed-to-start';
  if (end.lost) return 'lost';
  if (end.code === 0) return 'exited';
  if (moment.stopping) return 'stopped';
  // The agent stopped it on its own (input closed, no heartbeat) while npurun was not stopping: the
  // link to the host failed, not the rank.
  if (end.stoppedBy) return 'lost';
  return end.signal ? 'signal' : 'exited';
}

/** Blames a rank for a hang after the fact (its end was recorded as stopped when the stacks were taken). */
export function blameHang(outcome: RankOutcome, why: string): void {
  Object.assign(outcome, { cause: 'hang', failed: true, rootCause: true, message: why });
}

/** Judges one rank's end. Pure: the same end at the same moment always gives the same outcome. */
export function rankOutcome(
  spec: Pick<RankSpec, 'label' | 'rank' | 'host' | 'deviceId'>,
  end: RankEnd | undefined,
  moment: RunMoment,
  message?: string,
  now = new Date(),
): RankOutcome {
  const cause = causeOf(end, moment);
  const failed =
    cause === 'failed-to-start' || cause === 'lost' || cause === 'signal' || (cause === 'exited' && end?.code !== 0);
  const why =
    message ?? (end?.stoppedBy && cause === 'lost' ? `stopped by its host's agent: ${end.stoppedBy}` : undefined);
  return {
    label: spec.label,
    rank: spec.rank,
    host: spec.host,
    deviceId: spec.deviceId,
    code: end?.code ?? null,
    signal: end?.signal ?? null,
    cause,
    failed,
    rootCause: failed && !moment.stopping && !moment.interrupted,
    endedAt: now.toISOString(),
    ...(why ? { message: why } : {}),
  };
}

/** npurun's exit code for a root cause: the rank's own code, 128+N for signal N, 3 for a lost host. */
export function exitCodeOf(outcome: Pick<RankOutcome, 'cause' | 'code' | 'signal'>): number {
  if (outcome.cause === 'hang') return HANG_EXIT_CODE;
  if (outcome.cause === 'lost' || outcome.cause === 'failed-to-start') return EXIT.host;
  if (outcome.code !== null && outcome.code !== 0) return outcome.code;
  if (outcome.signal) return signalExitCode(constants.signals[outcome.signal as keyof typeof constants.signals] ?? 0);
  return EXIT.problems;
}

/** The run's end from its ranks' outcomes: interrupted beats failed beats succeeded. */
export function runOutcome(
  outcomes: RankOutcome[],
  rootCause: RankOutcome | undefined,
  interruptedBy: string | undefined,
): RunOutcome {
  const ranks = [...outcomes].sort((a, b) => a.rank - b.rank);
  if (interruptedBy) {
    return {
      status: 'interrupted',
      exitCode: signalExitCode(constants.signals[interruptedBy as keyof typeof constants.signals] ?? 2),
      interruptedBy,
      ranks,
    };
  }
  if (rootCause) return { status: 'failed', exitCode: exitCodeOf(rootCause), rootCause, ranks };
  const failed = ranks.find((r) => r.failed);
  if (failed) return { status: 'failed', exitCode: exitCodeOf(failed), rootCause: failed, ranks };
  return { status: 'succeeded', exitCode: EXIT.ok, ranks };
}

export function describeEnd(o: Pick<RankOutcome, 'cause' | 'code' | 'signal' | 'message'>): string {
  switch (o.cause) {
    case 'failed-to-start':
      return `failed to start${o.message ? `: ${o.message}` : ''}`;
    case 'lost':
      return `was lost with its host${o.message ? ` (${o.message})` : ''}`;
    case 'stopped':
      return `was stopped by npurun (${o.signal ?? `exit ${o.code}`})`;
    case 'signal':
      return `was killed by ${o.signal}`;
    case 'exited':
      return `exited with code ${o.code}`;
    case 'hang':
      return `stopped making progress${o.message ? ` (${o.message})` : ''}`;
  }
}

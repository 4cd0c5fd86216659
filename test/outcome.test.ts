import { describe, expect, it } from 'vitest';
import {
  blameHang,
  describeEnd,
  exitCodeOf,
  HANG_EXIT_CODE,
  rankOutcome,
  runOutcome,
  type RunMoment,
} from '../src/supervise/outcome.js';

const spec = (rank: number) => ({ label: String(rank), rank, host: 'h1', deviceId: rank });
const calm: RunMoment = { stopping: false, interrupted: false };
const stopping: RunMoment = { stopping: true, interrupted: false };
const at = new Date('2026-01-01T00:00:00Z');

describe('how a rank ended (pure rules)', () => {
  it.each([
    ['exit 0', { code: 0, signal: null, lost: false }, calm, 'exited', false, false],
    ['exit 7 on its own: the root cause', { code: 7, signal: null, lost: false }, calm, 'exited', true, true],
    [
      'exit 0 while stopping is still a clean exit',
      { code: 0, signal: null, lost: false },
      stopping,
      'exited',
      false,
      false,
    ],
    [
      'SIGTERM while npurun stops everything: a victim',
      { code: null, signal: 'SIGTERM', lost: false },
      stopping,
      'stopped',
      false,
      false,
    ],
    [
      'a signal npurun did not send: failed',
      { code: null, signal: 'SIGKILL', lost: false },
      calm,
      'signal',
      true,
      true,
    ],
    ['its host was lost', { code: null, signal: null, lost: true }, calm, 'lost', true, true],
    [
      'stopped by its agent for want of heartbeats: the link failed, not the rank',
      { code: null, signal: 'SIGTERM', lost: false, stoppedBy: 'no heartbeat for 3 s' },
      calm,
      'lost',
      true,
      true,
    ],
  ] as const)('%s', (_name, end, moment, cause, failed, root) => {
    const o = rankOutcome(spec(1), end, moment, undefined, at);
    expect([o.cause, o.failed, o.rootCause]).toEqual([cause, failed, root]);
  });

  it('a rank that never started failed to start, with its message; an interrupt makes no root cause', () => {
    expect(rankOutcome(spec(2), undefined, calm, 'exec failed', at)).toMatchObject({
      cause: 'failed-to-start',
      failed: true,
      rootCause: true,
      message: 'exec failed',
    });
    expect(
      rankOutcome(spec(2), { code: 1, signal: null, lost: false }, { stopping: true, interrupted: true }, undefined, at)
        .rootCause,
    ).toBe(false);
  });

  it("exit codes: the rank's own, 128+N for signal N, 3 for a lost host or a start failure, 124 for a hang", () => {
    expect(exitCodeOf({ cause: 'exited', code: 7, signal: null })).toBe(7);
    expect(exitCodeOf({ cause: 'signal', code: null, signal: 'SIGKILL' })).toBe(137);
    expect(exitCodeOf({ cause: 'lost', code: null, signal: null })).toBe(3);
    expect(exitCodeOf({ cause: 'failed-to-start', code: 127, signal: null })).toBe(3);
    expect(exitCodeOf({ cause: 'hang', code: null, signal: 'SIGABRT' })).toBe(HANG_EXIT_CODE);
  });
});

describe('how a run ended (pure rules)', () => {
  const ok = rankOutcome(spec(0), { code: 0, signal: null, lost: false }, calm, undefined, at);
  const bad = rankOutcome(spec(1), { code: 7, signal: null, lost: false }, calm, undefined, at);
  const victim = rankOutcome(spec(2), { code: null, signal: 'SIGTERM', lost: false }, stopping, undefined, at);

  it('succeeded when no rank failed; ranks sorted by rank', () => {
    expect(runOutcome([ok], undefined, undefined)).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(runOutcome([victim, bad, ok], bad, undefined).ranks.map((r) => r.rank)).toEqual([0, 1, 2]);
  });

  it("failed with the root cause's exit code; interrupted beats failed (128+N of npurun's signal)", () => {
    expect(runOutcome([ok, bad, victim], bad, undefined)).toMatchObject({
      status: 'failed',
      exitCode: 7,
      rootCause: { label: '1' },
    });
    expect(runOutcome([ok, bad, victim], bad, 'SIGINT')).toMatchObject({
      status: 'interrupted',
      exitCode: 130,
      interruptedBy: 'SIGINT',
    });
  });

  it('a rank blamed for a hang becomes the root cause with exit 124; its end is described as such', () => {
    const culprit = rankOutcome(spec(3), { code: null, signal: 'SIGABRT', lost: false }, stopping, undefined, at);
    blameHang(culprit, 'the other 7 ranks wait in all_reduce');
    expect(runOutcome([ok, culprit], culprit, undefined)).toMatchObject({ status: 'failed', exitCode: 124 });
    expect(describeEnd(culprit)).toBe('stopped making progress (the other 7 ranks wait in all_reduce)');
  });
});

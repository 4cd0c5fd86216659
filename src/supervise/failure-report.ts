import { passedThroughNote } from '../errors.js';
import type { RunPlan } from '../plan/types.js';
import { classifyFailure } from './classify.js';
import { describeEnd, type RunOutcome } from './outcome.js';

/** The failure report: the root-cause rank, where it ran, how it ended, and its last lines. */
export function failureReport(
  outcome: RunOutcome,
  recorder: { lastLines(label: string, n: number): string[] },
  plan: RunPlan,
  stoppedBy?: string,
): string | undefined {
  if (outcome.status === 'interrupted') {
    const stopped = outcome.ranks.filter((r) => r.cause === 'stopped').length;
    return `npurun: stopped by ${stoppedBy ?? outcome.interruptedBy}; stopped ${stopped} rank${stopped === 1 ? '' : 's'} on ${plan.hosts.length} host${plan.hosts.length === 1 ? '' : 's'}`;
  }
  const rc = outcome.rootCause;
  if (!rc) return undefined;
  const lines = recorder.lastLines(rc.label, 20);
  const kind = classifyFailure(lines, rc.signal ?? undefined);
  const device = rc.deviceId === null ? '' : `, device ${rc.deviceId}`;
  const victims = outcome.ranks.filter((r) => r.cause === 'stopped').length;
  const out = [
    `npurun: rank ${rc.label} (host ${rc.host}${device}) ${describeEnd(rc)}${kind ? ` [${kind}]` : ''}`,
    `npurun: stopped the other ${victims} rank${victims === 1 ? '' : 's'}; exit code ${outcome.exitCode}`,
  ];
  if (lines.length > 0) out.push(`--- last ${lines.length} lines of rank ${rc.label} ---`, ...lines, '---');
  const note = rc.cause === 'exited' ? passedThroughNote(outcome.exitCode, rc.label) : undefined;
  if (note) out.push(`npurun: ${note}`);
  return out.join('\n');
}

import type { RunRecord } from '../run-folder/record.js';

/**
 * events.jsonl as a person reads it: one entry per thing that happened, with the noisy ones folded
 * (8 "rank-started" lines are one "8 ranks started"; a checkpoint step is one entry saying how many
 * saving ranks completed it).
 */

/** One events.jsonl line (pino): `event` names it, the rest depends on it. */
export interface RunEvent {
  time: string;
  event: string;
  [field: string]: unknown;
}

export interface TimelineEntry {
  time: string;
  /** Milliseconds since the run started. */
  offsetMs: number;
  kind: string;
  text: string;
  level: 'info' | 'ok' | 'warn' | 'error';
}

/** Failed ranks listed one by one; beyond that, one line counts the rest. */
const MAX_FAILURES_LISTED = 20;

/** Events npurun writes for its own bookkeeping: not shown. */
const HIDDEN = new Set(['ckpt-pruned', 'rank-table-copied']);

function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
}

/** Ranks the launcher expects a checkpoint from (master-only saving: rank 0 alone). */
function savingRanks(record: RunRecord): number {
  const workers = record.ranks.filter((r) => r.role !== 'scheduler');
  const flagged = workers.filter((r) => r.env?.NPURUN_CKPT_SAVE !== undefined);
  if (flagged.length > 0) return flagged.filter((r) => r.env.NPURUN_CKPT_SAVE === '1').length;
  return record.job?.checkpoint?.masterOnly ? 1 : workers.length;
}

/** One checkpoint step: how many saving ranks completed it, and when the last of them did. */
export interface CheckpointStep {
  step: number;
  epoch: number | null;
  ranks: number;
  saving: number;
  complete: boolean;
  time: string;
}

/** The checkpoint steps of a run, from its ckpt-saved events, in step order. */
export function checkpointSteps(events: RunEvent[], record: RunRecord): CheckpointStep[] {
  const saving = savingRanks(record);
  const steps = new Map<number, { time: string; labels: Set<string>; epoch: number | null }>();
  for (const e of events) {
    if (e.event !== 'ckpt-saved' || typeof e.step !== 'number') continue;
    const entry = steps.get(e.step) ?? {
      time: e.time,
      labels: new Set<string>(),
      epoch: typeof e.epoch === 'number' ? e.epoch : null,
    };
    entry.time = e.time;
    entry.labels.add(str(e.label));
    steps.set(e.step, entry);
  }
  return [...steps.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([step, c]) => ({
      step,
      epoch: c.epoch,
      ranks: c.labels.size,
      saving,
      complete: c.labels.size >= saving,
      time: c.time,
    }));
}

function genericText(e: RunEvent): string {
  const skip = new Set(['level', 'time', 'run_id', 'event', 'kind', 'pid', 'hostname', 'msg']);
  const parts = Object.entries(e)
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${str(v)}`);
  return `${e.event}${parts.length ? `: ${parts.join(', ')}` : ''}`.slice(0, 300);
}

export function timeline(events: RunEvent[], record: RunRecord): TimelineEntry[] {
  const started = Date.parse(record.started_at);
  const out: TimelineEntry[] = [];
  const add = (e: RunEvent, kind: string, text: string, level: TimelineEntry['level']) =>
    out.push({ time: e.time, offsetMs: Date.parse(e.time) - started, kind, text, level });
  let startedRun: { last: RunEvent; count: number } | undefined;
  let cleanExits: { last: RunEvent; count: number } | undefined;
  let stopped: { last: RunEvent; count: number; how: string } | undefined;
  let failed: { last: RunEvent; count: number } | undefined;
  // Consecutive events of one other kind about single ranks (e.g. one per saving rank) fold into one entry.
  let generic: { entry: TimelineEntry; first: RunEvent; labels: string[] } | undefined;

  const flushStarted = () => {
    if (startedRun)
      add(
        startedRun.last,
        'rank-started',
        `${startedRun.count} rank${startedRun.count === 1 ? '' : 's'} started`,
        'info',
      );
    startedRun = undefined;
  };
  for (const e of events) {
    if (e.event !== 'rank-started') flushStarted();
    switch (e.event) {
      case 'launch': {
        const hosts = Array.isArray(e.hosts) ? e.hosts.length : 0;
        add(
          e,
          'launch',
          `launch: ${str(e.world_size)} ranks on ${hosts} host${hosts === 1 ? '' : 's'} (preflight passed)`,
          'info',
        );
        break;
      }
      case 'rank-started':
        startedRun = { last: e, count: (startedRun?.count ?? 0) + 1 };
        break;
      case 'rank-exited':
        if (e.code === 0 && e.cause === 'exited') cleanExits = { last: e, count: (cleanExits?.count ?? 0) + 1 };
        else if (e.cause === 'stopped' && !e.root_cause)
          stopped = { last: e, count: (stopped?.count ?? 0) + 1, how: str(e.signal ?? e.code) };
        else if (!e.root_cause && (failed?.count ?? 0) >= MAX_FAILURES_LISTED)
          failed = { last: e, count: (failed?.count ?? 0) + 1 };
        else {
          const how = e.signal ? `killed by ${str(e.signal)}` : `exited with code ${str(e.code)}`;
          add(
            e,
            'rank-exited',
            `rank ${str(e.label)} (${str(e.host)}) ${how}${e.root_cause ? ': root cause' : ''}`,
            'error',
          );
          if (!e.root_cause) failed = { last: e, count: (failed?.count ?? 0) + 1 };
        }
        break;
      case 'ckpt-saved':
        break;
      case 'ckpt-latest':
        add(
          e,
          'ckpt-latest',
          `newest checkpoint every saving rank completed: epoch ${str(e.epoch)}, step ${str(e.step)}`,
          'ok',
        );
        break;
      case 'finish':
        add(
          e,
          'finish',
          `run ${str(e.status)}, exit code ${str(e.exit_code)}${e.root_cause ? `, root cause rank ${str(e.root_cause)}` : ''}`,
          e.status === 'succeeded' ? 'ok' : 'error',
        );
        break;
      case 'hang': {
        const culprits = Array.isArray(e.culprits) ? e.culprits.map(str) : [];
        add(
          e,
          'hang',
          `hang: no rank made progress for ${(Number(e.silent_ms) / 1000).toFixed(0)} s${culprits.length ? `; rank ${culprits.join(', ')} ${typeof e.why === 'string' ? `(${e.why})` : ''}` : ''}`.trim(),
          'error',
        );
        break;
      }
      case 'stopping':
        add(e, 'stopping', `stopping all ranks: ${str(e.reason)}`, 'warn');
        break;
      default:
        if (!HIDDEN.has(e.event)) {
          const last = out[out.length - 1];
          if (generic && last === generic.entry && generic.first.event === e.event && typeof e.label === 'string') {
            generic.labels.push(e.label);
            const shown = generic.labels.slice(0, 8).join(', ') + (generic.labels.length > 8 ? ', …' : '');
            last.text =
              `${e.event} on ${generic.labels.length} ranks (${shown}); the first: ${genericText(generic.first)}`.slice(
                0,
                400,
              );
            last.time = e.time;
            last.offsetMs = Date.parse(e.time) - started;
            break;
          }
          const bad = /error|fail|lost|hang|straggler|escalate|restart|partial/.test(e.event);
          add(e, e.event, genericText(e), bad ? 'warn' : 'info');
          generic =
            typeof e.label === 'string'
              ? { entry: out[out.length - 1] as TimelineEntry, first: e, labels: [e.label] }
              : undefined;
        }
    }
  }
  flushStarted();
  if (stopped)
    add(
      stopped.last,
      'rank-exited',
      `${stopped.count} rank${stopped.count === 1 ? '' : 's'} stopped by npurun (${stopped.how})`,
      'warn',
    );
  if (failed && failed.count > MAX_FAILURES_LISTED)
    add(
      failed.last,
      'rank-exited',
      `${failed.count - MAX_FAILURES_LISTED} more ranks failed (each in the rank list below)`,
      'error',
    );
  if (cleanExits)
    add(
      cleanExits.last,
      'rank-exited',
      `${cleanExits.count} rank${cleanExits.count === 1 ? '' : 's'} exited with code 0`,
      'ok',
    );
  for (const c of checkpointSteps(events, record)) {
    out.push({
      time: c.time,
      offsetMs: Date.parse(c.time) - started,
      kind: 'ckpt-saved',
      text: `checkpoint step ${c.step} (epoch ${c.epoch ?? '?'}): ${c.ranks}/${c.saving} saving ranks complete`,
      level: c.complete ? 'ok' : 'warn',
    });
  }
  return out.sort((a, b) => a.time.localeCompare(b.time));
}

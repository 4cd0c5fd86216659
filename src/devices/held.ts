import type { HostFacts } from '../devices/types.js';
import { shellQuote } from '../shell.js';

/** Where runs keep their pid files unless the job says otherwise (see JobSpec.remoteDir). */
export const DEFAULT_REMOTE_DIR = '/tmp/npurun-{uid}/{run_id}';

/** A device another live npurun run of this user holds on a host, from that run's pid files. */
export interface HeldDevice {
  runId: string;
  label: string;
  pid: number;
  device: number;
}

/**
 * Shell lines (appended to the probe, so no extra round trip) printing every pid file under the
 * remote-dir template of this user's runs with the current /proc stat of its pid, so a reused pid is
 * told apart by its start time. `{uid}` is the host-side uid, `{run_id}` any run.
 */
export function heldScript(remoteDirTemplate: string): string {
  const glob = remoteDirTemplate
    .split(/(\{uid\}|\{run_id\})/)
    .map((part) => (part === '{uid}' ? '"$(id -u)"' : part === '{run_id}' ? '*' : part === '' ? '' : shellQuote(part)))
    .join('');
  return [
    'echo "@@npurun:held@@"',
    `for f in ${glob}/pids/*.json; do [ -f "$f" ] || continue; printf '%s\\n' "$(cat "$f")";`,
    `  p=$(sed -n 's/.*"pid": *\\([0-9][0-9]*\\).*/\\1/p' "$f"); [ -n "$p" ] && [ -r "/proc/$p/stat" ] && printf 'stat %s\\n' "$(cat "/proc/$p/stat")"; done`,
    'echo "@@npurun:held-end@@"',
  ].join('\n');
}

function startTicksOf(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? undefined : Number(fields[19]);
}

/** Live ranks with a device, from heldScript's output (a pid file followed by its pid's stat line). */
export function parseHeld(output: string): HeldDevice[] {
  const m = /@@npurun:held@@\n([\s\S]*?)@@npurun:held-end@@/.exec(output);
  if (!m) return [];
  const out: HeldDevice[] = [];
  let last: { run_id?: unknown; label?: unknown; pid?: unknown; start_ticks?: unknown; device?: unknown } | undefined;
  for (const line of (m[1] as string).split('\n')) {
    if (line.startsWith('stat ')) {
      if (last && typeof last.device === 'number' && startTicksOf(line.slice(5)) === last.start_ticks) {
        out.push({ runId: String(last.run_id), label: String(last.label), pid: Number(last.pid), device: last.device });
      }
      last = undefined;
    } else if (line.startsWith('{')) {
      try {
        last = JSON.parse(line) as typeof last;
      } catch {
        last = undefined;
      }
    }
  }
  return out;
}

/** Marks the devices other live runs hold as held by them, so the planner refuses or skips them. */
export function markHeld(facts: HostFacts, held: HeldDevice[]): void {
  for (const h of held) {
    const dev = facts.devices.find((d) => d.deviceId === h.device);
    if (!dev || dev.processes.some((p) => p.pid === h.pid)) continue;
    dev.processes.push({ pid: h.pid, name: `npurun run ${h.runId} rank ${h.label}` });
    facts.problems.push(`device ${h.device} is held by npurun run ${h.runId} (rank ${h.label}, pid ${h.pid})`);
  }
}

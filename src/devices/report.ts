import { deviceUsable } from './probe.js';
import type { HostFacts } from './types.js';

/** One host's devices as a table: id, npu/chip, name, health, address and its source, bus id, holders; then its problems. */
export function renderDeviceTable(host: string, facts: HostFacts): string {
  const rows = [['device', 'npu/chip', 'name', 'health', 'device ip', 'from', 'bus id', 'held by']];
  for (const d of facts.devices) {
    rows.push([
      String(d.deviceId),
      `${d.npuId}/${d.chipId}`,
      d.name,
      d.health,
      d.deviceIp ?? '-',
      d.ipSource ?? '-',
      d.busId ?? '-',
      d.processes.length ? d.processes.map((p) => `${p.pid}${p.name ? ` ${p.name}` : ''}`).join(', ') : '-',
    ]);
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const count =
    facts.devices.length === 0
      ? 'no NPUs found'
      : `${facts.devices.length} NPU${facts.devices.length === 1 ? '' : 's'}`;
  const lines = [
    `${host}: ${count}${facts.simulated ? ' (simulated)' : ''}${facts.tools.npuSmi ? ` via ${facts.tools.npuSmi}` : ''}`,
  ];
  if (facts.devices.length > 0)
    lines.push(
      ...rows.map(
        (r) =>
          '  ' +
          r
            .map((c, i) => c.padEnd(widths[i] as number))
            .join('  ')
            .trimEnd(),
      ),
    );
  for (const p of facts.problems) lines.push(`  problem: ${p}`);
  return lines.join('\n');
}

/** How ready a set of hosts is: every device fine; some with problems; or a host without one usable device. */
export function readiness(facts: HostFacts[]): 'ready' | 'problems' | 'not-ready' {
  const usable = (f: HostFacts) => f.devices.some((d) => deviceUsable(d, false) === undefined);
  if (facts.some((f) => !usable(f))) return 'not-ready';
  return facts.some((f) => f.problems.length > 0) ? 'problems' : 'ready';
}

/** Said under the table when this machine has no NPU at all: the way to try npurun anyway. */
export const SIMULATE_HINT =
  'hint: no Ascend NPUs here? `--simulate 8` stands in 8 simulated NPUs (npurun devices --simulate 8; npurun launch --simulate 8 -- ...)';

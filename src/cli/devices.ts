import { resolve } from 'node:path';
import { deviceUsable, localShellRunner, probeHost } from '../devices/probe.js';
import { simulatedHostFacts } from '../devices/simulate.js';
import type { HostFacts } from '../devices/types.js';
import { inputError } from '../errors.js';
import { boolFlag, numberFlag, parseCommandArgs, stringFlag } from './args.js';

const HELP = `Usage: npurun devices [--hosts FILE] [--simulate N] [--json]

The NPUs of this host (or of every host of --hosts, over SSH): device id, NPU/chip, chip name,
health, HCCL NIC address and where it came from (/etc/hccn.conf or hccn_tool), bus id, and the
pids holding a device. Problems (no npu-smi, unhealthy device, device without address, device held
by another process) are listed under the table.
  --simulate N  N simulated devices instead of probing this host: 1-8 NPUs of a 910B server,
                9-16 dies of an A3 server
  --json        the facts as JSON (one object; with --hosts one per host name)
Exit code: 0 every device healthy, free and addressed; 1 some devices have problems (the others are
usable); 3 a host has no usable (healthy and free) device, or cannot be reached.
Tools are searched on PATH and in /usr/local/Ascend/driver/tools, /usr/local/sbin, /usr/local/bin and
/usr/local/dcmi; NPURUN_HCCN_CONF names another file than /etc/hccn.conf (tests).`;

const OPTIONS = {
  hosts: { type: 'string' },
  'ssh-config': { type: 'string' },
  simulate: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function renderDeviceTable(host: string, facts: HostFacts): string {
  const rows = [['device', 'npu/chip', 'name', 'health', 'device ip', 'from', 'bus id', 'held by']];
  for (const d of facts.devices) {
    rows.push([
      String(d.deviceId), `${d.npuId}/${d.chipId}`, d.name, d.health, d.deviceIp ?? '-', d.ipSource ?? '-', d.busId ?? '-',
      d.processes.length ? d.processes.map((p) => `${p.pid}${p.name ? ` ${p.name}` : ''}`).join(', ') : '-',
    ]);
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const lines = [`${host}: ${facts.devices.length === 0 ? 'no NPUs found' : `${facts.devices.length} NPU${facts.devices.length === 1 ? '' : 's'}`}${facts.simulated ? ' (simulated)' : ''}${facts.tools.npuSmi ? ` via ${facts.tools.npuSmi}` : ''}`];
  if (facts.devices.length > 0) lines.push(...rows.map((r) => '  ' + r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()));
  for (const p of facts.problems) lines.push(`  problem: ${p}`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs('devices', argv, OPTIONS, false);
  if (boolFlag(args, 'help')) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const simulate = numberFlag(args, 'simulate', 1, 16);
  const hostsFile = stringFlag(args, 'hosts');
  let all: Record<string, HostFacts>;
  if (hostsFile) {
    if (simulate !== undefined) throw inputError('--simulate', 'not with --hosts: each host is probed as it is');
    // SSH and the launcher load only when hosts are probed: the local table starts faster.
    const [{ loadInventory }, { preflight }, { sshJumpResolver }, { sshConfigText }] = await Promise.all([
      import('../inventory/inventory.js'),
      import('../launch/preflight.js'),
      import('../launch/jump.js'),
      import('./launch.js'),
    ]);
    const configText = sshConfigText(stringFlag(args, 'ssh-config'));
    const hosts = loadInventory(resolve(hostsFile), configText !== undefined ? { sshConfigText: configText } : {});
    const { transports, facts } = await preflight(hosts, { progress: 'none', ssh: { resolveJump: sshJumpResolver(configText) } });
    await Promise.all([...transports.values()].map((t) => t.close()));
    all = facts;
  } else {
    const local = simulate !== undefined ? simulatedHostFacts(simulate) : await probeHost(localShellRunner);
    all = { [local.hostname || 'this host']: local };
  }
  if (boolFlag(args, 'json')) process.stdout.write(JSON.stringify(hostsFile ? all : Object.values(all)[0], null, 2) + '\n');
  else process.stdout.write(Object.entries(all).map(([h, f]) => renderDeviceTable(h, f)).join('\n\n') + '\n');
  const facts = Object.values(all);
  const usable = (f: HostFacts) => f.devices.some((d) => deviceUsable(d, false) === undefined);
  if (facts.some((f) => !usable(f))) return 3;
  return facts.some((f) => f.problems.length > 0) ? 1 : 0;
}

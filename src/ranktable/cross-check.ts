import type { HostFacts } from '../devices/types.js';
import type { HostSpec } from '../plan/types.js';
import type { RankTable } from './types.js';
import type { Problem } from './validate.js';

/** Each server of the table against the live host with that address: its devices and their NIC addresses. */
export function crossCheckHosts(
  table: RankTable,
  hosts: HostSpec[],
  facts: Record<string, HostFacts>,
  hostsFile: string,
): Problem[] {
  const problems: Problem[] = [];
  table.server_list.forEach((s, si) => {
    const host = hosts.find((h) => h.address === s.server_id);
    if (!host) {
      problems.push({
        path: `server_list[${si}].server_id`,
        message: `${s.server_id} is none of the hosts in ${hostsFile}`,
      });
      return;
    }
    const f = facts[host.name] as HostFacts;
    s.device.forEach((d, di) => {
      const dev = f.devices.find((x) => String(x.deviceId) === d.device_id);
      if (!dev)
        problems.push({
          path: `server_list[${si}].device[${di}].device_id`,
          message: `host ${host.name} has no device ${d.device_id} (npu-smi lists ${f.devices.map((x) => x.deviceId).join(', ') || 'none'})`,
        });
      else if (dev.deviceIp !== d.device_ip)
        problems.push({
          path: `server_list[${si}].device[${di}].device_ip`,
          message: `${d.device_ip}, but host ${host.name} reports ${dev.deviceIp ?? 'no address'} for device ${d.device_id}`,
        });
    });
  });
  return problems;
}

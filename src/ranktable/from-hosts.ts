import { parseDeviceList } from '../devices/device-list.js';
import { detectHostIp } from '../devices/host-ip.js';
import { isIPv4 } from '../devices/npu-smi.js';
import type { HostFacts, ShellRunner } from '../devices/types.js';
import { inputError, notReadyError } from '../errors.js';
import type { HostSpec } from '../plan/types.js';
import { generateRankTable } from './generate.js';
import { parseVisibleDevices, selectDevices, serverFromFacts, withDeviceIpFile } from './select.js';
import type { RankTable } from './types.js';

/** What `ranktable generate` was asked: hccl_tools' --device_num, --visible_devices, --server_ip, an address file. */
export interface GenerateChoice {
  logical?: number[];
  visible?: number[];
  serverIp?: string;
  deviceIpFile?: string;
  onWarning: (message: string) => void;
}

/** The choice from generate's flags as typed: --devices, --visible-devices, --server-ip, --device-ip-file. */
export function generateChoice(
  flags: {
    devices?: string | undefined;
    visibleDevices?: string | undefined;
    serverIp?: string | undefined;
    deviceIpFile?: string | undefined;
  },
  onWarning: (message: string) => void,
): GenerateChoice {
  const visible = parseVisibleDevices(flags.visibleDevices);
  return {
    ...(flags.devices !== undefined ? { logical: parseDeviceList(flags.devices, '--devices') } : {}),
    ...(visible ? { visible } : {}),
    ...(flags.serverIp !== undefined ? { serverIp: flags.serverIp } : {}),
    ...(flags.deviceIpFile !== undefined ? { deviceIpFile: flags.deviceIpFile } : {}),
    onWarning,
  };
}

const ipSourceOf = (c: GenerateChoice) => c.deviceIpFile ?? '/etc/hccn.conf, and hccn_tool gave none';

/**
 * The table of this server, and the file name hccl_tools gives it (by the logical ids, whatever they map
 * to); `run` is a shell on this server (its default route gives server_id when --server-ip is not given).
 */
export async function rankTableOfThisHost(
  probed: HostFacts,
  c: GenerateChoice,
  run: ShellRunner,
): Promise<{ table: RankTable; name: string }> {
  if (c.serverIp !== undefined && !isIPv4(c.serverIp))
    throw inputError('--server-ip', `"${c.serverIp}" is not an IPv4 address`);
  if (probed.devices.length === 0) {
    throw notReadyError(`no NPUs on this host: ${probed.problems.join('; ') || 'npu-smi listed none'}`, {
      hint: 'no Ascend hardware here? try --simulate 8',
    });
  }
  const facts = c.deviceIpFile ? withDeviceIpFile(probed, c.deviceIpFile) : probed;
  const { logical, physical } = selectDevices(facts, c.logical, c.visible);
  const id = c.serverIp ?? (await detectHostIp(facts, run));
  const table = generateRankTable([serverFromFacts(id, facts, physical, 'this host', ipSourceOf(c), c.onWarning)]);
  return { table, name: `hccl_${logical.length}p_${logical.join('')}_${id}.json` };
}

/** Refuses what cannot be combined with --hosts, and hosts whose address cannot be a server_id; before any connection. */
export function checkHostsChoice(c: GenerateChoice, hosts: HostSpec[], hostsFile: string): void {
  if (c.serverIp !== undefined)
    throw inputError('--server-ip', "not with --hosts: each server_id is that host's address in the inventory");
  if (c.deviceIpFile !== undefined)
    throw inputError(
      '--device-ip-file',
      "not with --hosts: each host's addresses come from its own /etc/hccn.conf or hccn_tool",
    );
  for (const h of hosts)
    if (!isIPv4(h.address))
      throw inputError(
        hostsFile,
        `host ${h.name}: address "${h.address}" is not an IPv4 address; server_id must be the server's IP`,
      );
}

/** One table of every server, ranks numbered server by server. */
export function rankTableOfHosts(hosts: HostSpec[], facts: Record<string, HostFacts>, c: GenerateChoice): RankTable {
  return generateRankTable(
    hosts.map((h) => {
      const f = facts[h.name] as HostFacts;
      return serverFromFacts(
        h.address,
        f,
        selectDevices(f, c.logical, c.visible).physical,
        `host ${h.name}`,
        ipSourceOf(c),
        c.onWarning,
      );
    }),
  );
}

import { readFileSync } from 'node:fs';
import { isIPv4, parseHccnConf } from '../devices/npu-smi.js';
import { deviceUsable } from '../devices/probe.js';
import type { HostFacts } from '../devices/types.js';
import { fileError, inputError, notReadyError } from '../errors.js';
import type { RankTableServerInput } from './types.js';
import { groupingProblem, serverKindOf } from './validate.js';

/** hccl_tools' --visible_devices: physical ids by position, position = logical id. */
export function parseVisibleDevices(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const ids = text.split(',').map((v) => {
    if (!/^\s*\d+\s*$/.test(v) || Number(v) > 15)
      throw inputError('--visible-devices', `"${text}" is not a comma-separated list of device ids 0-15`);
    return Number(v);
  });
  if (new Set(ids).size !== ids.length) throw inputError('--visible-devices', `"${text}" lists a device twice`);
  return ids;
}

export interface Selection {
  /** hccl_tools' logical ids (what --devices names, and what the file name carries). */
  logical: number[];
  physical: number[];
}

/** Logical ids (default: every visible or detected device) mapped to physical ids; refuses groupings HCCL refuses. */
export function selectDevices(
  facts: HostFacts,
  logicalFlag: number[] | undefined,
  visible: number[] | undefined,
): Selection {
  const logical = logicalFlag ?? (visible ? visible.map((_, i) => i) : facts.devices.map((d) => d.deviceId));
  const physical = logical.map((l) => {
    if (!visible) return l;
    const p = visible[l];
    if (p === undefined)
      throw inputError(
        '--devices',
        `logical device ${l} is beyond --visible-devices (${visible.length} visible: logical ids 0-${visible.length - 1})`,
      );
    return p;
  });
  const bad = groupingProblem(
    [...physical].sort((a, b) => a - b),
    serverKindOf(facts.devices),
  );
  if (bad)
    throw inputError(
      visible ? '--visible-devices' : '--devices',
      visible ? `${bad} (physical ids ${physical.join(',')})` : bad,
    );
  return { logical, physical };
}

/** --device-ip-file: an hccn.conf-style file is the only source of device addresses. */
export function withDeviceIpFile(facts: HostFacts, file: string): HostFacts {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(file, 'cannot read the --device-ip-file', err);
  }
  const conf = parseHccnConf(text);
  return {
    ...facts,
    devices: facts.devices.map((d) => {
      const { deviceIp: _ip, ipSource: _source, ...rest } = d;
      const address = conf.get(d.deviceId)?.address;
      if (address !== undefined && !isIPv4(address))
        throw inputError(file, `address_${d.deviceId}: expected an IPv4 address, got "${address}"`);
      return address ? { ...rest, deviceIp: address, ipSource: 'given' as const } : rest;
    }),
  };
}

/** One server of a rank table from a host's facts; a device held or unhealthy is written with a warning (as hccl_tools does). */
export function serverFromFacts(
  serverId: string,
  facts: HostFacts,
  physical: number[],
  where: string,
  ipSource: string,
  onWarning: (message: string) => void,
): RankTableServerInput {
  const devices = physical.map((id) => {
    const d = facts.devices.find((x) => x.deviceId === id);
    if (!d)
      throw inputError(
        '--devices',
        `${where}: device ${id} not found (npu-smi lists ${facts.devices.map((x) => x.deviceId).join(', ') || 'none'})`,
      );
    if (!d.deviceIp)
      throw notReadyError(`${where}: device ${id} has no device IP (no address_${id} in ${ipSource})`, {
        hint: 'give the addresses with --device-ip-file FILE (address_N=IP lines)',
      });
    const unusable = deviceUsable(d, false);
    if (unusable)
      onWarning(`${where}: device ${id} ${unusable}; written into the rank table anyway (as hccl_tools does)`);
    return { deviceId: id, deviceIp: d.deviceIp };
  });
  return { serverId, devices };
}

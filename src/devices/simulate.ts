import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { inputError } from '../errors.js';
import { parseCpuList } from './probe.js';
import type { HostFacts, NumaNode } from './types.js';

export interface SimulateOptions {
  /** Host name to report (default: this machine's). */
  hostname?: string;
  /** Position of the server in a simulated cluster (0, 1, ...): gives each server its own device IPs. */
  serverIndex?: number;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/**
 * Device IPs laid out as on Atlas 800 servers (test/fixtures/hccn.conf.server-a and -b): one subnet
 * per device position in a group of four, 192.168.10<i%4>.<101 - group + 10 * server>. Unique for
 * 16 devices on each of 15 servers.
 */
export function simulatedDeviceIp(deviceId: number, serverIndex = 0): string {
  return `192.168.${100 + (deviceId % 4)}.${101 - Math.floor(deviceId / 4) + 10 * serverIndex}`;
}

/** Devices per server type: a 910A/910B server has 8 NPUs, an A3 server 16 dies (two per NPU). */
export const DEVICES_910B = 8;
export const DIES_A3 = 16;

/**
 * A host with `n` simulated devices, for machines without Ascend hardware (demo, CI): health OK,
 * no processes, and this machine's real CPUs, NUMA nodes and interfaces. Up to 8 it is a 910B server
 * with `n` NPUs; 9 to 16 can only be an A3 server, whose first `n` dies are shown as npu-smi numbers
 * them (NPU id = die / 2, chip = die % 2, as in test/fixtures/npu-smi-info-a3.txt).
 */
export function simulatedHostFacts(n: number, opts: SimulateOptions = {}): HostFacts {
  if (!Number.isInteger(n) || n < 1 || n > DIES_A3)
    throw inputError('--simulate', `${n} is not a device count from 1 to 16`);
  const a3 = n > DEVICES_910B;
  const server = opts.serverIndex ?? 0;
  if (!Number.isInteger(server) || server < 0 || server > 14)
    throw inputError('simulate', `server index ${server} is not from 0 to 14`);
  const cpus = parseCpuList(readOr('/sys/devices/system/cpu/online', '0'));
  const numaNodes: NumaNode[] = [];
  for (let node = 0; node < 64; node++) {
    const list = readOr(`/sys/devices/system/node/node${node}/cpulist`, '');
    if (list === '') break;
    numaNodes.push({ node, cpus: parseCpuList(list) });
  }
  const interfaces = Object.entries(networkInterfaces()).map(([name, addrs]) => ({
    name,
    addresses: (addrs ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address),
  }));
  return {
    hostname: opts.hostname ?? hostname(),
    devices: Array.from({ length: n }, (_, i) => ({
      deviceId: i,
      npuId: a3 ? Math.floor(i / 2) : i,
      chipId: a3 ? i % 2 : 0,
      name: a3 ? 'Ascend910 A3 (simulated)' : '910B3 (simulated)',
      health: 'OK',
      deviceIp: simulatedDeviceIp(i, server),
      ipSource: 'simulated' as const,
      processes: [],
    })),
    cpus,
    numaNodes,
    interfaces: interfaces.filter((i) => i.addresses.length > 0),
    problems: [],
    tools: {},
    simulated: true,
  };
}

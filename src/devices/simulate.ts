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

/**
 * A host with `n` simulated 910B NPUs, for machines without Ascend hardware (demo, CI): health OK,
 * no processes, and this machine's real CPUs, NUMA nodes and interfaces.
 */
export function simulatedHostFacts(n: number, opts: SimulateOptions = {}): HostFacts {
  if (!Number.isInteger(n) || n < 1 || n > 16) throw inputError('--simulate', `${n} is not a device count from 1 to 16`);
  const server = opts.serverIndex ?? 0;
  if (!Number.isInteger(server) || server < 0 || server > 14) throw inputError('simulate', `server index ${server} is not from 0 to 14`);
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
      npuId: i,
      chipId: 0,
      name: '910B3 (simulated)',
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

import { readFileSync } from 'node:fs';
import { networkInterfaces, hostname } from 'node:os';
import { parseCpuList } from './probe.js';
import type { HostFacts, NumaNode } from './types.js';

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/**
 * A host with `n` simulated 910B NPUs, for machines without Ascend hardware (demo, CI): device IPs
 * laid out as on Atlas 800 servers (192.168.10d.101, one subnet per device in each group of four),
 * health OK, no processes, and this machine's real CPUs, NUMA nodes and interfaces.
 */
export function simulatedHostFacts(n: number): HostFacts {
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
    hostname: hostname(),
    devices: Array.from({ length: n }, (_, i) => ({
      deviceId: i,
      npuId: i,
      chipId: 0,
      name: '910B3 (simulated)',
      health: 'OK',
      deviceIp: `192.168.${100 + (i % 4)}.${i < 4 ? 101 : 100}`,
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

import { NpurunError } from '../errors.js';
import { isIPv4 } from './npu-smi.js';
import type { HostFacts, NetInterface, ShellRunner } from './types.js';

/** Asks the kernel for the default route; sends no packet and needs no name lookup. */
export const DEFAULT_ROUTE_SCRIPT = 'ip -o -4 route show default 2>/dev/null';

/**
 * The host's own IP as the rank table's server_id wants it: the `src` of the default route, else the
 * first address of the interface holding it, else the first non-loopback IPv4. Never the hostname
 * lookup hccl_tools.py uses, which often answers 127.0.x.x. Pure.
 */
export function hostIpFromRoutes(routeText: string, interfaces: NetInterface[]): string | undefined {
  for (const line of routeText.split('\n')) {
    if (!/^default\b/.test(line.trim())) continue;
    const src = /\bsrc\s+(\S+)/.exec(line)?.[1];
    if (src && isIPv4(src)) return src;
    const dev = /\bdev\s+(\S+)/.exec(line)?.[1];
    const address = interfaces.find((i) => i.name === dev)?.addresses.find((a) => !a.startsWith('127.'));
    if (address) return address;
  }
  return interfaces.flatMap((i) => i.addresses).find((a) => !a.startsWith('127.'));
}

/** Detects the IP of the host `facts` describe, asking its default route through `run` (a shell on that host). */
export async function detectHostIp(facts: HostFacts, run: ShellRunner): Promise<string> {
  const routes = await run(DEFAULT_ROUTE_SCRIPT);
  const ip = hostIpFromRoutes(routes.stdout, facts.interfaces);
  if (ip) return ip;
  throw new NpurunError(
    'input',
    `cannot detect the IP of ${facts.hostname || 'this host'} (no default route, no non-loopback IPv4 address); give --server-ip`,
  );
}

import { parseDeviceList } from '../devices/device-list.js';
import { NpurunError } from '../errors.js';
import type { HostSpec } from './types.js';

/** What Slurm says about an allocation, parsed: pure, the queries themselves are in transport/srun.ts. */

/** `scontrol show node -o A B ...`: node name -> NodeAddr (one line per node, `Key=Value` fields). */
export function parseNodeAddrs(text: string): Map<string, string> {
  const addrs = new Map<string, string>();
  for (const line of text.split('\n')) {
    const name = /(?:^|\s)NodeName=(\S+)/.exec(line)?.[1];
    const addr = /(?:^|\s)NodeAddr=(\S+)/.exec(line)?.[1];
    if (name && addr) addrs.set(name, addr);
  }
  return addrs;
}

/** `scontrol show hostnames LIST`: one node name per line, in allocation order. */
export function parseHostnames(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** The allocation's nodes as hosts, in allocation order (node rank = index), addressed by NodeAddr. */
export function allocationHosts(jobId: string, names: string[], addrs: Map<string, string>): HostSpec[] {
  return names.map((node) => {
    const address = addrs.get(node);
    if (!address)
      throw new NpurunError('unreachable', `Slurm job ${jobId}: scontrol gave no NodeAddr for node ${node}`);
    return { name: node, address, local: false, devices: 'auto', slurm: { jobId, node } };
  });
}

/**
 * The devices Slurm gave a step on one node, from its variables: the Ascend gres plugin's
 * SLURM_STEP_NPUS or ASCEND_VISIBLE_DEVICES (ids, ranges, or names like Ascend910-3), else a gpu-typed
 * gres's SLURM_STEP_GPUS. Undefined when none is set (no device gres: the probe's free devices are used).
 */
export function slurmStepDevices(
  vars: { npus?: string; ascend?: string; gpus?: string },
  where: string,
): number[] | undefined {
  const found = (
    [
      ['SLURM_STEP_NPUS', vars.npus],
      ['ASCEND_VISIBLE_DEVICES', vars.ascend],
      ['SLURM_STEP_GPUS', vars.gpus],
    ] as const
  ).find(([, v]) => v !== undefined && v.trim() !== '');
  if (!found) return undefined;
  const [name, value] = found;
  const ids = (value as string).replace(/\bAscend\w*-(\d+)/g, '$1');
  try {
    return parseDeviceList(ids, name);
  } catch (err) {
    throw new NpurunError(
      'not-ready',
      `${where}: Slurm set ${name}=${JSON.stringify(value)}, which is not a list of device ids${err instanceof Error ? ` (${err.message})` : ''}`,
    );
  }
}

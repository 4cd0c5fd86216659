import type { NumaNode } from '../devices/types.js';

/**
 * Each local rank's share of the host's CPUs, as run_distribute_train.sh does with `taskset -c`
 * (1/N of the cores each), NUMA-aware: ranks are spread over the NUMA nodes in order and each rank's
 * cores come from its own node (8 ranks on 2 nodes of 96 cores: ranks 0-3 on node 0, 4-7 on node 1,
 * 24 cores each). With fewer cores than ranks, ranks share cores round-robin.
 */
export function splitCpus(cpus: number[], numaNodes: NumaNode[], ranks: number): number[][] {
  if (ranks <= 0) return [];
  const nodes = numaNodes.filter((n) => n.cpus.length > 0);
  if (nodes.length > 1 && ranks >= nodes.length && ranks % nodes.length === 0) {
    const perNode = ranks / nodes.length;
    return nodes.flatMap((n) => splitEvenly(n.cpus, perNode));
  }
  return splitEvenly(cpus, ranks);
}

function splitEvenly(cpus: number[], ranks: number): number[][] {
  if (cpus.length < ranks) return Array.from({ length: ranks }, (_, i) => [cpus[i % Math.max(cpus.length, 1)] ?? 0]);
  const size = Math.floor(cpus.length / ranks);
  return Array.from({ length: ranks }, (_, i) => cpus.slice(i * size, (i + 1) * size));
}

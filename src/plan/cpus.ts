import type { NumaNode } from '../devices/types.js';

export interface CpuSplit {
  /** CPU ids per local rank, in local-rank order ([] = not pinned). */
  sets: number[][];
  /** Set when the split is not 1/N of the cores each (too few CPUs, none known). */
  warning?: string;
}

/**
 * Each local rank's share of the host's CPUs, as run_distribute_train.sh does with `taskset -c`
 * (1/N of the cores each, in order), NUMA-aware: when every rank's share fits inside one node, ranks
 * fill the nodes in order, so no rank straddles two (8 ranks on 2 nodes of 96 cores: ranks 0-3 on
 * node 0, 4-7 on node 1, 24 cores each). With fewer cores than ranks, ranks share them round-robin.
 * `cpus` are the online CPUs; node lists are trimmed to them.
 */
export function splitCpus(cpus: number[], numaNodes: NumaNode[], ranks: number): CpuSplit {
  if (ranks <= 0) return { sets: [] };
  const online = new Set(cpus);
  const nodes = numaNodes
    .slice()
    .sort((a, b) => a.node - b.node)
    .map((n) => (cpus.length > 0 ? n.cpus.filter((c) => online.has(c)) : n.cpus))
    .filter((n) => n.length > 0);
  const all = cpus.length > 0 ? cpus : nodes.flat();
  if (all.length === 0)
    return {
      sets: Array.from({ length: ranks }, () => []),
      warning: 'the host reported no CPUs: ranks are not pinned',
    };
  if (all.length < ranks) {
    return {
      sets: Array.from({ length: ranks }, (_, i) => [all[i % all.length] as number]),
      warning: `${ranks} ranks share ${all.length} CPU${all.length === 1 ? '' : 's'} round-robin`,
    };
  }
  const size = Math.floor(all.length / ranks);
  if (nodes.length > 1) {
    const capacity = nodes.map((n) => Math.floor(n.length / size));
    if (capacity.reduce((a, b) => a + b, 0) >= ranks) {
      const sets: number[][] = [];
      nodes.forEach((n, i) => {
        for (let k = 0; k < (capacity[i] as number) && sets.length < ranks; k++)
          sets.push(n.slice(k * size, (k + 1) * size));
      });
      return { sets };
    }
  }
  // Node order, then contiguous 1/N slices: a rank straddles nodes only when its share cannot fit in one.
  const ordered = nodes.length > 1 && nodes.flat().length === all.length ? nodes.flat() : all;
  return { sets: Array.from({ length: ranks }, (_, i) => ordered.slice(i * size, (i + 1) * size)) };
}

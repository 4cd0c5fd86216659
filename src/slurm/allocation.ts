import { inputError, NpurunError } from '../errors.js';
import { allocationHosts, parseHostnames, parseNodeAddrs } from '../inventory/slurm.js';
import type { HostSpec } from '../inventory/types.js';
import { slurmCommand } from '../transport/slurm-commands.js';

/** The Slurm allocation npurun runs in: its job id and its nodes as hosts, in allocation order. */
export interface Allocation {
  jobId: string;
  hosts: HostSpec[];
}

/**
 * Reads the allocation of SLURM_JOB_ID: the node list expanded by `scontrol show hostnames` (Slurm's
 * own order: node rank = index) and each node's address from `scontrol show node -o` (NodeAddr, not
 * DNS: node names need not resolve). `where` names what asked for Slurm in messages (--engine slurm).
 */
export async function readAllocation(env: NodeJS.ProcessEnv, where: string): Promise<Allocation> {
  const jobId = env.SLURM_JOB_ID ?? env.SLURM_JOBID;
  if (!jobId)
    throw inputError(
      where,
      'not inside a Slurm allocation (SLURM_JOB_ID is not set); run it under salloc or sbatch, or use `npurun submit`',
    );
  const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  if (!list) throw inputError(where, `Slurm job ${jobId}: SLURM_JOB_NODELIST is not set`);
  const names = await slurmCommand('scontrol', ['show', 'hostnames', list]);
  if (names.code !== 0 || parseHostnames(names.stdout).length === 0)
    throw inputError(
      'SLURM_JOB_NODELIST',
      `Slurm rejects the node list "${list}"${names.stderr ? `: ${names.stderr}` : ''}; expected the list of job ${jobId}`,
    );
  const nodes = parseHostnames(names.stdout);
  const shown = await slurmCommand('scontrol', ['show', 'node', '-o', nodes.join(',')]);
  if (shown.code !== 0)
    throw new NpurunError(
      'unreachable',
      `Slurm job ${jobId}: scontrol show node ${nodes.join(',')} failed${shown.stderr ? `: ${shown.stderr}` : ''}`,
    );
  return { jobId, hosts: allocationHosts(jobId, nodes, parseNodeAddrs(shown.stdout)) };
}

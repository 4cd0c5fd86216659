import { NpurunError } from '../errors.js';
import { slurmCommand } from '../transport/slurm-commands.js';

/** Submits a batch script (on sbatch's stdin) and returns the job id Slurm gave it. */
export async function submitBatch(script: string): Promise<string> {
  const r = await slurmCommand('sbatch', ['--parsable'], script);
  const jobId = /^(\d+)/.exec(r.stdout.trim())?.[1];
  if (r.code !== 0 || jobId === undefined)
    throw new NpurunError('not-ready', `sbatch refused the job${r.stderr ? `: ${r.stderr}` : ` (exit ${r.code})`}`);
  return jobId;
}

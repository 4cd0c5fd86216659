import { execa } from 'execa';
import { NpurunError } from '../errors.js';

/** Slurm's client commands npurun runs on this machine (scontrol, sbatch): the one place they are spawned. */

export interface SlurmCommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a Slurm client command; a missing binary is said in words (exit 3: this machine is not ready). */
export async function slurmCommand(
  program: 'scontrol' | 'sbatch',
  args: string[],
  input?: string,
): Promise<SlurmCommandResult> {
  const r = await execa(program, args, { reject: false, ...(input !== undefined ? { input } : {}), timeout: 60_000 });
  if (r.failed && r.exitCode === undefined) {
    const why = /ENOENT/.test(r.message ?? '') ? 'not found on PATH (is this a Slurm node?)' : r.shortMessage;
    throw new NpurunError('not-ready', `cannot run ${program}: ${why}`);
  }
  const result: SlurmCommandResult = { stdout: r.stdout, stderr: r.stderr.trim(), code: r.exitCode ?? 1 };
  return result;
}

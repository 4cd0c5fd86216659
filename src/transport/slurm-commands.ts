import { execFile } from 'node:child_process';
import { NpurunError } from '../errors.js';

/**
 * Slurm's client commands npurun runs on this machine (scontrol, sbatch): the one place they are
 * spawned. node:child_process, not execa: a launch in an allocation would pay ~70 ms to import it.
 */

export interface SlurmCommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a Slurm client command; a missing binary is said in words (exit 3: this machine is not ready). */
export function slurmCommand(
  program: 'scontrol' | 'sbatch',
  args: string[],
  input?: string,
): Promise<SlurmCommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(program, args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: string | number }) | null;
      if (e && typeof e.code === 'string') {
        const why = e.code === 'ENOENT' ? 'not found on PATH (is this a Slurm node?)' : e.message;
        reject(new NpurunError('not-ready', `cannot run ${program}: ${why}`));
        return;
      }
      resolve({ stdout, stderr: stderr.trim(), code: e ? (typeof e.code === 'number' ? e.code : 1) : 0 });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

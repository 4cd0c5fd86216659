import { inputError } from '../errors.js';
import type { Engine } from '../plan/types.js';

export const ENGINES: readonly Engine[] = ['ssh', 'slurm', 'local'];

export interface EngineInput {
  /** --engine as given. */
  flag?: string | undefined;
  /** The job file's `engine:`. */
  job?: Engine | undefined;
  /** --hosts, else the job file's `hosts:`. */
  hostsFile?: string | undefined;
  simulate?: number | undefined;
  env: NodeJS.ProcessEnv;
}

export interface EngineChoice {
  engine: Engine;
  /** Why, in words, for the launch line. */
  why: string;
}

/**
 * Which engine a launch uses: --engine, else the job file's engine:, else Slurm inside an allocation
 * (SLURM_JOB_ID set) when no hosts file is given, else SSH with a hosts file, else this machine.
 * Contradictions are bad input (exit 2), said before anything starts.
 */
export function chooseEngine(input: EngineInput): EngineChoice {
  const { flag, job, hostsFile, simulate, env } = input;
  if (flag !== undefined && !(ENGINES as readonly string[]).includes(flag))
    throw inputError('--engine', `"${flag}" is not an engine; expected ssh, slurm or local`);
  const where = flag !== undefined ? '--engine' : 'engine';
  const given = (flag as Engine | undefined) ?? job;
  const jobId = env.SLURM_JOB_ID ?? env.SLURM_JOBID;
  let choice: EngineChoice;
  if (given) choice = { engine: given, why: `${where} ${given}` };
  else if (jobId && !hostsFile && simulate === undefined)
    choice = { engine: 'slurm', why: `SLURM_JOB_ID=${jobId} is set and no --hosts was given` };
  else choice = { engine: hostsFile ? 'ssh' : 'local', why: hostsFile ? 'a hosts file' : 'no hosts file' };
  if (choice.engine === 'slurm') {
    if (hostsFile) throw inputError(where, 'slurm takes its hosts from the allocation; drop --hosts (or hosts:)');
    if (simulate !== undefined)
      throw inputError(where, "slurm runs on the allocation's nodes; --simulate is for this machine only");
    if (!jobId)
      throw inputError(
        where,
        'slurm needs a Slurm allocation, and SLURM_JOB_ID is not set; run npurun under salloc or sbatch, or use `npurun submit`',
      );
  }
  if (choice.engine === 'ssh' && !hostsFile)
    throw inputError(where, 'ssh needs a hosts file: give --hosts FILE (or hosts:)');
  if (choice.engine === 'local' && hostsFile)
    throw inputError(where, 'local runs on this machine only; drop --hosts (or hosts:), or use --engine ssh');
  return choice;
}

import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inputError } from '../errors.js';
import { expandTilde, loadJobFile, resolveJob } from '../plan/job.js';
import { renderSbatch } from '../slurm/sbatch.js';
import { boolFlag, intFlag, runCommand, runsDirFlag, SHARED, stringFlag, type CommandSpec } from './args.js';
import { writableDir } from './hosts.js';

export const SPEC: CommandSpec = {
  name: 'submit',
  usage: 'npurun submit --job FILE --nodes N [options] [-- <command> [args...]]',
  about: `Write a Slurm batch script that runs \`npurun launch --engine slurm --job FILE\` inside the
allocation (one task per node; npurun starts one agent per node with srun) and submit it with
sbatch; prints the job id. Slurm's own output goes to <runs-dir>/slurm-<jobid>.out, the run folder
beside it; \`npurun runs\` shows the job id. npurun and node must be at the same path on the nodes.`,
  flags: {
    job: { type: 'string', value: 'FILE', help: 'job file (YAML, see templates/); required' },
    nodes: { type: 'int', value: 'N', min: 1, max: 4096, help: 'nodes to allocate (#SBATCH --nodes); required' },
    gres: {
      type: 'string',
      value: 'SPEC',
      help: `devices per node as Slurm's gres (e.g. gpu:910b:8, npu:8); default none: the
whole nodes (--exclusive) and the devices the probe finds free`,
    },
    shared: { type: 'boolean', help: 'do not ask for the nodes exclusively (default: --exclusive)' },
    time: { type: 'string', value: 'LIMIT', help: 'time limit (#SBATCH --time: minutes, H:M:S, D-H)' },
    partition: { type: 'string', value: 'NAME', help: 'partition (#SBATCH --partition)' },
    account: { type: 'string', value: 'NAME', help: 'account (#SBATCH --account)' },
    name: { type: 'string', value: 'NAME', help: 'Slurm job name (default npurun-<job file name>)' },
    'runs-dir': { ...SHARED['runs-dir'], help: 'where the run folder and slurm-<jobid>.out go (default ./runs)' },
    'dry-run': { type: 'boolean', help: 'print the batch script, submit nothing' },
  },
  footer: 'Exit code: 0 submitted (or printed); 2 bad input; 3 sbatch missing or refusing the job.',
};

/** npurun as the nodes run it: this node binary and this package's entry file. */
const NPURUN = [process.execPath, fileURLToPath(new URL('../../bin/npurun', import.meta.url))];

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, async (args) => {
    const jobArg = stringFlag(args, 'job');
    if (jobArg === undefined) throw inputError('--job', 'missing; expected the job file to submit');
    const nodes = intFlag(args, 'nodes', 1, 4096);
    if (nodes === undefined) throw inputError('--nodes', 'missing; expected how many nodes to allocate');
    const jobFile = resolve(expandTilde(jobArg, '--job'));
    // Checked here, so a bad job file is said now and not in the job's output later.
    const job = resolveJob(loadJobFile(jobFile), { command: args.rest, env: [] }, process.cwd());
    if (job.hostsFile !== undefined)
      throw inputError(`${jobFile}: hosts`, 'a submitted job runs on the nodes Slurm allocates; remove hosts:');
    const dryRun = boolFlag(args, 'dry-run');
    const runsDir = dryRun ? runsDirFlag(args) : writableDir(runsDirFlag(args), '--runs-dir');
    const optional = (flag: string) => {
      const v = stringFlag(args, flag);
      return v === undefined ? {} : { [flag]: v };
    };
    const script = renderSbatch({
      jobFile,
      nodes,
      exclusive: !boolFlag(args, 'shared'),
      ...optional('gres'),
      ...optional('time'),
      ...optional('partition'),
      ...optional('account'),
      jobName: stringFlag(args, 'name') ?? `npurun-${job.name ?? basename(jobFile).replace(/\.ya?ml$/, '')}`,
      runsDir,
      chdir: process.cwd(),
      npurun: NPURUN,
      command: args.rest,
    });
    if (dryRun) {
      process.stdout.write(script);
      return 0;
    }
    const { submitBatch } = await import('../slurm/submit.js');
    const jobId = await submitBatch(script);
    process.stderr.write(`npurun: submitted Slurm job ${jobId}; its output: ${runsDir}/slurm-${jobId}.out\n`);
    process.stdout.write(`${jobId}\n`);
    return 0;
  });
}

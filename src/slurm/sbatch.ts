import { inputError } from '../errors.js';
import { shellQuote } from '../shell.js';

/** What `npurun submit` puts into the batch script: one task per node, npurun launch inside the allocation. */
export interface SbatchRequest {
  /** The job file, absolute. */
  jobFile: string;
  nodes: number;
  /** `--gres` as Slurm takes it (gpu:910b:8, npu:8); none: the nodes' devices as the probe finds them. */
  gres?: string;
  exclusive: boolean;
  time?: string;
  partition?: string;
  account?: string;
  jobName: string;
  /** Where the run folder goes (absolute); Slurm's own output file goes there too. */
  runsDir: string;
  /** Where the job starts (absolute). */
  chdir: string;
  /** The program and arguments that run npurun on the nodes (node and its entry file). */
  npurun: string[];
  /** The rank command after `--`, when the job file has none or it is overridden. */
  command: string[];
}

// Directive values travel unquoted on #SBATCH lines: only characters Slurm reads as one word.
const WORD = /^[A-Za-z0-9_.,:=+@/-]+$/;
const TIME = /^(\d+|\d+:\d{2}(:\d{2})?|\d+-\d+(:\d{2}(:\d{2})?)?)$/;

function word(value: string, flag: string, expected: string): string {
  if (!WORD.test(value)) throw inputError(flag, `"${value}" ${expected}`);
  return value;
}

/** The sbatch script (POSIX sh) for a request; every value checked, paths quoted. */
export function renderSbatch(req: SbatchRequest): string {
  if (req.time !== undefined && !TIME.test(req.time))
    throw inputError('--time', `"${req.time}" is not a Slurm time limit; expected minutes, M:S, H:M:S or D-H[:M[:S]]`);
  const directives = [
    `--job-name=${word(req.jobName, '--name', "is not a job name; expected letters, digits, '.', '_' or '-'")}`,
    `--nodes=${req.nodes}`,
    '--ntasks-per-node=1',
    ...(req.gres !== undefined
      ? [`--gres=${word(req.gres, '--gres', 'is not a gres request; expected e.g. gpu:910b:8 or npu:8')}`]
      : []),
    ...(req.exclusive ? ['--exclusive'] : []),
    ...(req.time !== undefined ? [`--time=${req.time}`] : []),
    ...(req.partition !== undefined
      ? [`--partition=${word(req.partition, '--partition', 'is not a partition name')}`]
      : []),
    ...(req.account !== undefined ? [`--account=${word(req.account, '--account', 'is not an account name')}`] : []),
    `--output=${word(req.runsDir, '--runs-dir', 'cannot be written on an #SBATCH line; expected a path without blanks or quotes')}/slurm-%j.out`,
    `--chdir=${word(req.chdir, 'the current directory', 'cannot be written on an #SBATCH line; expected a path without blanks or quotes')}`,
  ];
  const launch = [
    ...req.npurun,
    'launch',
    '--engine',
    'slurm',
    '--job',
    req.jobFile,
    '--runs-dir',
    req.runsDir,
    ...(req.command.length > 0 ? ['--', ...req.command] : []),
  ];
  return [
    '#!/bin/sh',
    `# Written by npurun submit from ${req.jobFile.replace(/\n/g, ' ')}.`,
    ...directives.map((d) => `#SBATCH ${d}`),
    '# npurun starts one agent per node with srun and its ranks under them; the job ends with its exit code.',
    `exec ${launch.map(shellQuote).join(' ')}`,
    '',
  ].join('\n');
}

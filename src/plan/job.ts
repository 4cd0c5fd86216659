import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDeviceList } from '../devices/device-list.js';
import { inputError } from '../errors.js';
import { loadYamlFile } from '../schema.js';
import type { CheckpointPolicy, Engine, HostLossPolicy, JobSpec, ProfileName } from './types.js';

/** A job file as written (snake_case, schemas/job.schema.json), with the file it came from. */
export interface JobFile {
  file: string;
  name?: string;
  profile?: ProfileName;
  command?: string[] | string;
  hosts?: string;
  engine?: Engine;
  simulate?: number;
  devices?: string | number | number[];
  nproc_per_node?: number;
  env?: Record<string, string>;
  vars?: Record<string, string | number | boolean>;
  args_template?: string[];
  workdir?: string;
  rank_dir?: string;
  bind_cores?: boolean;
  grace?: number;
  master_port?: number;
  rank_table?: string;
  remote_dir?: string;
  heartbeat_timeout?: number;
  hang_timeout?: number;
  progress_pattern?: string;
  restarts?: number;
  host_wait?: number;
  on_host_loss?: HostLossPolicy;
  resume_arg?: string;
  resume_map?: 'error' | 'rank0' | 'same-rank';
  eval?: { dataset_size?: number };
  checkpoint?: {
    interval?: number;
    unit?: 'epoch' | 'step';
    keep_max?: number;
    master_only?: boolean;
    dir?: string;
    pattern?: string;
  };
}

/** What `npurun launch` flags can set; every field optional (unset = the job file's value or the default). */
export interface JobFlags {
  command: string[];
  /** `--env K=V`, as given. */
  env: string[];
  profile?: string;
  devices?: string;
  nprocPerNode?: number;
  rankTable?: string;
  name?: string;
  workdir?: string;
  rankDir?: string;
  remoteDir?: string;
  bindCores?: boolean | undefined;
  graceSeconds?: number;
  masterPort?: number;
  heartbeatTimeoutSeconds?: number;
  hangTimeoutSeconds?: number;
  progressPattern?: string;
  maxRestarts?: number;
  hostWaitSeconds?: number;
  onHostLoss?: string;
}

export const PROFILES: readonly ProfileName[] = ['mindspore', 'msrun', 'tensorflow', 'torch'];
export const HOST_LOSS_POLICIES: readonly HostLossPolicy[] = ['wait', 'spare', 'shrink'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function loadJobFile(file: string): JobFile {
  return { ...(loadYamlFile(file, 'job.schema.json', 'job file') as Omit<JobFile, 'file'>), file };
}

/**
 * Splits a command string into words the way a POSIX shell splits them, without running one:
 * whitespace separates words; 'single quotes' keep everything literally; "double quotes" keep
 * everything literally except the escapes \" \\ \$ \`; outside quotes a backslash keeps the next
 * character; backslash-newline outside single quotes joins lines. Nothing is expanded: $VAR,
 * $(...), `...`, globs and ~ reach the program as written.
 */
export function splitCommand(text: string, where: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && text[i + 1] === '\n') i++;
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1] as string)) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && text[i + 1] === '\n') {
      // A line continuation, as in a `command: |` block copied from a shell script: no character at all.
      i++;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw inputError(where, `unterminated ${quote} quote in "${text}"`);
  if (inWord) words.push(cur);
  return words;
}

function parseEnvFlag(kv: string): [string, string] {
  const eq = kv.indexOf('=');
  const key = eq === -1 ? kv : kv.slice(0, eq);
  if (eq === -1 || !ENV_NAME.test(key))
    throw inputError(
      '--env',
      `"${kv}" is not NAME=VALUE with NAME of letters, digits and _ (not starting with a digit)`,
    );
  return [key, kv.slice(eq + 1)];
}

/** torch_npu stops parsing ASCEND_RT_VISIBLE_DEVICES at the first bad character ("1, 2,3" = device 1 only). */
export function checkVisibleDevices(value: string, where: string): void {
  if (!/^\d+(,\d+)*$/.test(value))
    throw inputError(
      where,
      `ASCEND_RT_VISIBLE_DEVICES="${value}" must be ascending ids joined by commas without spaces, e.g. "0,1,2,3"`,
    );
  const ids = value.split(',').map(Number);
  if (ids.some((id, i) => i > 0 && id <= (ids[i - 1] as number)))
    throw inputError(where, `ASCEND_RT_VISIBLE_DEVICES="${value}" must list ids in ascending order`);
}

/** The checkpoint policy's placeholders, {ckpt.<key>}. */
const CKPT_PLACEHOLDERS = ['interval', 'unit', 'keep_max', 'master_only', 'dir'];

/** Fills {ckpt.*}, {vars.*} and {job_dir} in one argument of the job file's command or args_template. */
function substitute(arg: string, values: Record<string, string>, where: string): string {
  return arg.replace(/\{((?:ckpt|vars)\.[A-Za-z0-9_]+|job_dir)\}/g, (_, key: string) => {
    const v = values[key];
    if (key.startsWith('ckpt.') && !CKPT_PLACEHOLDERS.includes(key.slice(5))) {
      throw inputError(
        where,
        `unknown placeholder {${key}}; expected one of ${CKPT_PLACEHOLDERS.map((k) => `{ckpt.${k}}`).join(' ')}`,
      );
    }
    if (v === undefined) {
      const source = key.startsWith('vars.') ? `vars.${key.slice(5)}` : `checkpoint.${key.slice(5)}`;
      throw inputError(where, `placeholder {${key}} has no value; expected ${source} in the job file`);
    }
    return v;
  });
}

function jobDevices(value: string | number | number[], where: string): number[] {
  if (typeof value === 'number') return parseDeviceList(String(value), where);
  if (Array.isArray(value)) return parseDeviceList(value.join(','), where);
  return parseDeviceList(value, where);
}

/**
 * `~` and `~/x` expanded as a shell would, to this machine's home directory: the path then means the
 * same on every host. `~user` is refused (which user's home on which host is not npurun's to guess).
 */
export function expandTilde(path: string, where: string, home = homedir()): string {
  if (path === '~' || path.startsWith('~/')) return join(home, path.slice(1));
  if (path.startsWith('~'))
    throw inputError(where, `"${path}": ~user is not expanded; expected ~/..., an absolute path, or a relative one`);
  return path;
}

/** The directory on every host for the rank table and pid files: absolute, or it would land wherever each host's login starts. */
function remoteDirOf(path: string, where: string): string {
  const p = expandTilde(path, where);
  if (!p.startsWith('/'))
    throw inputError(
      where,
      `"${path}" is a relative path; expected an absolute directory on the hosts, e.g. /tmp/npurun-{uid}/{run_id}`,
    );
  return p;
}

/** The per-rank directory is under workdir: an absolute or home path there would not be. */
function rankDirOf(path: string, where: string): string {
  if (path.startsWith('/') || path.startsWith('~'))
    throw inputError(
      where,
      `"${path}" is not under workdir; expected a relative path such as train_parallel{rank} (set workdir for the base)`,
    );
  return path;
}

/** Hang detection settings, the progress pattern checked as a regular expression here at the door. */
function optionalHang(
  timeout: number | undefined,
  pattern: string | undefined,
  where: string,
): Pick<JobSpec, 'hangTimeoutSeconds' | 'progressPattern'> {
  if (pattern !== undefined) {
    try {
      new RegExp(pattern);
    } catch (err) {
      throw inputError(
        where,
        `"${pattern}" is not a regular expression (${(err as Error).message}); expected e.g. "epoch\\[\\d+\\]"`,
      );
    }
  }
  return {
    ...(timeout !== undefined ? { hangTimeoutSeconds: timeout } : {}),
    ...(pattern !== undefined ? { progressPattern: pattern } : {}),
  };
}

export function resolveJob(file: JobFile | undefined, flags: JobFlags, cwd: string): JobSpec {
  const f: Partial<JobFile> = file ?? {};
  const base = file ? dirname(file.file) : cwd;
  const where = file ? file.file : 'flags';
  // Paths in the job file: ~ is this machine's home; relative ones are relative to the job file.
  const rel = (p: string, field: string) => {
    const expanded = expandTilde(p, `${where}: ${field}`);
    return isAbsolute(expanded) ? expanded : resolve(base, expanded);
  };
  // Paths in flags: as the shell would have left them, relative to the current directory.
  const fromFlag = (p: string, flag: string) => resolve(cwd, expandTilde(p, flag));

  const profileRaw = flags.profile ?? f.profile ?? 'mindspore';
  if (!(PROFILES as readonly string[]).includes(profileRaw))
    throw inputError(
      flags.profile ? '--profile' : `${where}: profile`,
      `"${profileRaw}" is not one of ${PROFILES.join(', ')}`,
    );
  const profile = profileRaw as ProfileName;

  const env: Record<string, string> = {};
  const envSource = new Map<string, string>();
  for (const [k, v] of Object.entries(f.env ?? {})) {
    env[k] = v;
    envSource.set(k, `${where}: env.${k}`);
  }
  for (const kv of flags.env) {
    const [k, v] = parseEnvFlag(kv);
    env[k] = v;
    envSource.set(k, `--env ${k}`);
  }
  for (const key of Object.keys(env)) {
    if (key.startsWith('NPURUN_'))
      throw inputError(
        envSource.get(key) as string,
        'NPURUN_* variables are set by npurun itself; expected another name',
      );
  }
  if (env.ASCEND_RT_VISIBLE_DEVICES !== undefined)
    checkVisibleDevices(env.ASCEND_RT_VISIBLE_DEVICES, envSource.get('ASCEND_RT_VISIBLE_DEVICES') as string);

  let checkpoint: CheckpointPolicy | undefined;
  if (f.checkpoint) {
    const c = f.checkpoint;
    checkpoint = {
      ...(c.interval !== undefined ? { interval: c.interval } : {}),
      unit: c.unit ?? 'epoch',
      keepMax: c.keep_max ?? 5,
      masterOnly: c.master_only ?? false,
      dir: c.dir !== undefined ? expandTilde(c.dir, `${where}: checkpoint.dir`) : 'ckpt_{rank}',
      pattern: c.pattern ?? '{prefix}-{epoch}_{step}.ckpt',
    };
  }
  const values: Record<string, string> = {};
  if (checkpoint) {
    if (checkpoint.interval !== undefined) values['ckpt.interval'] = String(checkpoint.interval);
    values['ckpt.keep_max'] = String(checkpoint.keepMax);
    values['ckpt.master_only'] = checkpoint.masterOnly ? '1' : '0';
    values['ckpt.dir'] = checkpoint.dir;
    values['ckpt.unit'] = checkpoint.unit;
  }
  for (const [k, v] of Object.entries(f.vars ?? {})) values[`vars.${k}`] = String(v);
  // {job_dir}: the job file's own directory, so a job can name scripts that travel with it.
  if (file) values.job_dir = base;

  let command: string[];
  if (flags.command.length > 0) command = flags.command;
  else if (Array.isArray(f.command)) command = f.command.map((a) => substitute(a, values, `${where}: command`));
  else if (typeof f.command === 'string')
    command = splitCommand(f.command, `${where}: command`).map((a) => substitute(a, values, `${where}: command`));
  else throw inputError('npurun launch', 'no command to run: give it after `--` or as `command:` in the job file');
  // A command string of blanks and line continuations splits into no words at all.
  if (command.length === 0 || command[0] === '')
    throw inputError(`${where}: command`, 'names no program; expected the program to run and its arguments');
  // args_template hands the checkpoint policy and vars to the script's own flags, whichever command runs.
  for (const arg of f.args_template ?? []) command = [...command, substitute(arg, values, `${where}: args_template`)];

  const devicesText = flags.devices ?? f.devices;
  const job: JobSpec = {
    source: where,
    profile,
    command,
    env,
    workdir: flags.workdir ? fromFlag(flags.workdir, '--workdir') : f.workdir ? rel(f.workdir, 'workdir') : cwd,
    rankDir:
      flags.rankDir !== undefined
        ? rankDirOf(flags.rankDir, '--rank-dir')
        : f.rank_dir !== undefined
          ? rankDirOf(f.rank_dir, `${where}: rank_dir`)
          : 'train_parallel{rank}',
    bindCores: flags.bindCores ?? f.bind_cores ?? false,
    graceSeconds: flags.graceSeconds ?? f.grace ?? 10,
    masterPort: flags.masterPort ?? f.master_port ?? (profile === 'msrun' ? 8118 : 29500),
    remoteDir:
      flags.remoteDir !== undefined
        ? remoteDirOf(flags.remoteDir, '--remote-dir')
        : f.remote_dir !== undefined
          ? remoteDirOf(f.remote_dir, `${where}: remote_dir`)
          : '/tmp/npurun-{uid}/{run_id}',
    heartbeatTimeoutSeconds: flags.heartbeatTimeoutSeconds ?? f.heartbeat_timeout ?? 3,
    maxRestarts: flags.maxRestarts ?? f.restarts ?? 0,
    hostWaitSeconds: flags.hostWaitSeconds ?? f.host_wait ?? 120,
    ...optionalHang(
      flags.hangTimeoutSeconds ?? f.hang_timeout,
      flags.progressPattern ?? f.progress_pattern,
      flags.progressPattern !== undefined ? '--progress-pattern' : `${where}: progress_pattern`,
    ),
  };
  const name = flags.name ?? f.name;
  if (name !== undefined) {
    if (!/^[A-Za-z0-9_.-]{1,40}$/.test(name))
      throw inputError('--name', `"${name}" must be 1-40 letters, digits, '.', '_' or '-'`);
    job.name = name;
  }
  if (devicesText !== undefined)
    job.devices = jobDevices(devicesText, flags.devices !== undefined ? '--devices' : `${where}: devices`);
  const nproc = flags.nprocPerNode ?? f.nproc_per_node;
  if (nproc !== undefined) job.nprocPerNode = nproc;
  const table =
    flags.rankTable !== undefined
      ? fromFlag(flags.rankTable, '--rank-table')
      : f.rank_table !== undefined
        ? rel(f.rank_table, 'rank_table')
        : undefined;
  if (table) job.rankTableFile = table;
  if (checkpoint) job.checkpoint = checkpoint;
  if (f.simulate !== undefined) job.simulate = f.simulate;
  if (f.hosts !== undefined) job.hostsFile = rel(f.hosts, 'hosts');
  if (f.engine !== undefined) job.engine = f.engine;
  if (f.resume_arg !== undefined) job.resumeArg = f.resume_arg;
  if (f.resume_map !== undefined) job.resumeMap = f.resume_map;
  if (f.eval?.dataset_size !== undefined) job.evalDatasetSize = f.eval.dataset_size;
  const onHostLoss = flags.onHostLoss ?? f.on_host_loss;
  if (onHostLoss !== undefined) {
    if (!(HOST_LOSS_POLICIES as readonly string[]).includes(onHostLoss))
      throw inputError(
        flags.onHostLoss !== undefined ? '--on-host-loss' : `${where}: on_host_loss`,
        `"${onHostLoss}" is not one of ${HOST_LOSS_POLICIES.join(', ')}`,
      );
    job.onHostLoss = onHostLoss as HostLossPolicy;
  }
  return job;
}

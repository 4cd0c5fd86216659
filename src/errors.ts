/**
 * One error type for everything a person can cause or fix. The CLI maps `kind` to an exit code
 * and prints `message` as one line (plus `hint`), never a stack trace.
 *
 * Exit codes, by name (the one table; nothing else in npurun writes a literal code):
 *   ok 0           everything asked for was done
 *   problems 1     a check ran and found problems (devices with problems; a run that failed while running)
 *   input 2        bad flags, hosts file, job file or rank table: nothing was started
 *   host 3         a host could not be reached, or answered but is not ready (device, program missing)
 *   internal 70    a bug in npurun (EX_SOFTWARE)
 * A rank's own exit code is passed through as it is, and a rank killed by signal N as 128+N.
 */
export const EXIT = { ok: 0, problems: 1, input: 2, host: 3, internal: 70 } as const;

/** 128+N for a process ended by signal N, as shells report it. */
export function signalExitCode(signal: number): number {
  return 128 + signal;
}

/**
 * The launcher's last line when it passes a rank's own exit code through and that code is one npurun
 * also uses (2 = bad input, 3 = host not ready, 70 = internal): says whose code it is. Otherwise undefined.
 */
export function passedThroughNote(code: number, rank: string): string | undefined {
  const ours = Object.entries(EXIT).find(([, c]) => c === code && c !== EXIT.ok && c !== EXIT.problems);
  if (!ours) return undefined;
  return `exit code ${code} is rank ${rank}'s own exit code, passed through (npurun's own ${code} means ${EXIT_MEANING[code]})`;
}

const EXIT_MEANING: Record<number, string> = {
  [EXIT.input]: 'bad input',
  [EXIT.host]: 'a host unreachable or not ready',
  [EXIT.internal]: 'an internal error',
};

export type ErrorKind =
  | 'input' // bad flags, hosts file, job file, rank table: exit 2, nothing started
  | 'unreachable' // a host cannot be reached (connect, authenticate, open a channel): exit 3
  | 'not-ready' // a host answered but is not ready: device not found or busy, program missing: exit 3
  | 'runtime'; // something failed while running (not the job itself): exit 1

export const EXIT_CODES: Record<ErrorKind, number> = {
  input: EXIT.input,
  unreachable: EXIT.host,
  'not-ready': EXIT.host,
  runtime: EXIT.problems,
};

export class NpurunError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  /** Extra lines (e.g. one per problem found by a validator). */
  readonly details: string[];

  constructor(kind: ErrorKind, message: string, options: { hint?: string; details?: string[]; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NpurunError';
    this.kind = kind;
    this.hint = options.hint;
    this.details = options.details ?? [];
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}

/** Bad input: names the file (or flag), the field and what was expected. */
export function inputError(where: string, message: string, details: string[] = []): NpurunError {
  return new NpurunError('input', `${where}: ${message}`, { details });
}

/** A host that answered but is not ready for the job (device missing or held, program not found). */
export function notReadyError(message: string, options: { hint?: string; details?: string[] } = {}): NpurunError {
  return new NpurunError('not-ready', message, options);
}

export function isNpurunError(err: unknown): err is NpurunError {
  return err instanceof NpurunError;
}

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EEXIST: 'already exists',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
  EDQUOT: 'disk quota exceeded',
};

/** A file system error in words ("no such file or directory"), never an errno code alone. */
export function fileErrorWords(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && FILE_ERRORS[code]) return FILE_ERRORS[code] as string;
  return err instanceof Error ? err.message : String(err);
}

/** True for a Node.js file system error (it has an errno code and a syscall). */
export function isFileError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException | undefined;
  return typeof e?.code === 'string' && typeof e.syscall === 'string' && e.code in FILE_ERRORS;
}

/** Bad input about a file: "FILE: cannot read the hosts file: no such file or directory". */
export function fileError(file: string, doing: string, err: unknown): NpurunError {
  return new NpurunError('input', `${file}: ${doing}: ${fileErrorWords(err)}`, { cause: err });
}

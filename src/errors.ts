/**
 * One error type for everything a person can cause or fix. The CLI maps `kind` to an exit code
 * and prints `message` as one line (plus `hint`), never a stack trace.
 */
export type ErrorKind =
  | 'input' // bad flags, hosts file, job file, rank table: exit 2, nothing started
  | 'unreachable' // a host cannot be reached or fails preflight: exit 3
  | 'runtime'; // something failed while running (not the job itself): exit 1

export const EXIT_CODES: Record<ErrorKind, number> = { input: 2, unreachable: 3, runtime: 1 };

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

export function isNpurunError(err: unknown): err is NpurunError {
  return err instanceof NpurunError;
}

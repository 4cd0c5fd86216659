import { parseArgs, type ParseArgsConfig } from 'node:util';
import { inputError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Everything after `--`, untouched (the rank's command). */
  rest: string[];
}

/** node:util parseArgs with `--` split off first, so the rank's own flags never reach our parser. */
export function parseCommandArgs(command: string, argv: string[], options: Options, allowPositionals = true): ParsedArgs {
  const dashdash = argv.indexOf('--');
  const own = dashdash === -1 ? argv : argv.slice(0, dashdash);
  const rest = dashdash === -1 ? [] : argv.slice(dashdash + 1);
  try {
    const { values, positionals } = parseArgs({ args: own, options, allowPositionals, strict: true });
    return { values: values as ParsedArgs['values'], positionals, rest };
  } catch (err) {
    const message = err instanceof Error ? err.message.replace(/\. To specify a positional argument.*$/s, '') : String(err);
    throw inputError(`npurun ${command}`, `${message}; see \`npurun ${command} --help\``);
  }
}

export function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function numberFlag(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = stringFlag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v.trim()) || !Number.isFinite(n) || n < min || n > max) {
    throw inputError(`--${name}`, `"${v}" is not a number from ${min} to ${max}`);
  }
  return n;
}

export function listFlag(args: ParsedArgs, name: string): string[] {
  const v = args.values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export function boolFlag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

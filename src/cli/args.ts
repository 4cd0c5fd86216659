import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolve } from 'node:path';
import { EXIT, inputError } from '../errors.js';
import { helpText, type CommandSpec, type Flag, type Flags } from './help.js';

export type { CommandSpec, Flag, Flags };

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Everything after `--`, untouched (the rank's command). */
  rest: string[];
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags several commands share, declared once; a command may restate `help` where its meaning narrows. */
export const SHARED = {
  hosts: {
    type: 'string',
    value: 'FILE',
    help: 'inventory: YAML (see hosts/) or "host slots=N" hostfile; default: this machine',
  },
  'ssh-config': { type: 'string', value: 'FILE', help: 'ssh_config to honour (default ~/.ssh/config)' },
  simulate: {
    type: 'int',
    value: 'N',
    min: 1,
    max: 16,
    help: 'this machine reports N simulated NPUs (no Ascend hardware needed)',
  },
  json: { type: 'boolean', help: 'print JSON' },
  'runs-dir': {
    type: 'string',
    value: 'DIR',
    aliases: ['run-dir'],
    help: 'where run folders are (default ./runs; also --run-dir)',
  },
} as const satisfies Flags;

/** --runs-dir (also --run-dir, launch's old spelling): where run folders are, default ./runs. */
export function runsDirFlag(args: ParsedArgs): string {
  return resolve(stringFlag(args, 'runs-dir') ?? stringFlag(args, 'run-dir') ?? 'runs');
}

const HELP_FLAG: Flag = { type: 'boolean', short: 'h', help: 'this help' };

function withHelp(flags: Flags): Flags {
  return { ...flags, help: HELP_FLAG };
}

function parserOptions(flags: Flags): Options {
  const options: Options = {};
  for (const [name, f] of Object.entries(withHelp(flags))) {
    const type = f.type === 'boolean' ? 'boolean' : 'string';
    for (const n of [name, ...(f.aliases ?? [])]) {
      options[n] = {
        type,
        ...(f.multiple ? { multiple: true } : {}),
        ...(f.short && n === name ? { short: f.short } : {}),
      };
    }
  }
  return options;
}

/** Checks an int/number flag's value against its range; returns the number. */
function numberValue(name: string, f: Flag, v: string): number {
  const min = f.min ?? 0;
  const max = f.max ?? Number.MAX_SAFE_INTEGER;
  const shape = f.type === 'int' ? /^\d+$/ : /^\d+(\.\d+)?$/;
  const n = Number(v.trim());
  if (!shape.test(v.trim()) || !Number.isFinite(n) || n < min || n > max) {
    throw inputError(
      `--${name}`,
      `"${v}" is not ${f.type === 'int' ? 'a whole number' : 'a number'} from ${min} to ${max}`,
    );
  }
  return n;
}

/** Parses argv against a declaration: aliases folded in, numbers checked. `--help` is always accepted. */
export function parseFlags(spec: CommandSpec, argv: string[]): ParsedArgs {
  const args = parseCommandArgs(spec.name, argv, parserOptions(spec.flags), spec.positionals ?? false);
  for (const [name, f] of Object.entries(spec.flags)) {
    for (const alias of f.aliases ?? []) {
      if (args.values[alias] === undefined) continue;
      if (args.values[name] !== undefined)
        throw inputError(`npurun ${spec.name}`, `--${alias} and --${name} are the same flag; give one`);
      args.values[name] = args.values[alias];
      delete args.values[alias];
    }
    const v = args.values[name];
    if ((f.type === 'int' || f.type === 'number') && typeof v === 'string') numberValue(name, f, v);
  }
  return args;
}

/**
 * The body of every command: parse, print --help when asked, else call `body` (one library call).
 * Returns the exit code.
 */
export async function runCommand(
  spec: CommandSpec,
  argv: string[],
  body: (args: ParsedArgs) => Promise<number> | number,
): Promise<number> {
  const args = parseFlags(spec, argv);
  if (boolFlag(args, 'help')) {
    process.stdout.write(helpText(spec) + '\n');
    return EXIT.ok;
  }
  return body(args);
}

/** node:util parseArgs with `--` split off first, so the rank's own flags never reach our parser. */
export function parseCommandArgs(
  command: string,
  argv: string[],
  options: Options,
  allowPositionals = true,
): ParsedArgs {
  const dashdash = argv.indexOf('--');
  const own = dashdash === -1 ? argv : argv.slice(0, dashdash);
  const rest = dashdash === -1 ? [] : argv.slice(dashdash + 1);
  try {
    const { values, positionals } = parseArgs({ args: own, options, allowPositionals, strict: true });
    return { values: values as ParsedArgs['values'], positionals, rest };
  } catch (err) {
    const message =
      err instanceof Error ? err.message.replace(/\. To specify a positional argument.*$/s, '') : String(err);
    throw inputError(`npurun ${command}`, `${message}; see \`npurun ${command} --help\``);
  }
}

export function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A number flag; with a declaration (`parseFlags`) the range was checked there already. */
export function numberFlag(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = stringFlag(args, name);
  if (v === undefined) return undefined;
  return numberValue(name, { type: 'number', help: '', min, max }, v);
}

/** A whole-number flag. */
export function intFlag(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = stringFlag(args, name);
  if (v === undefined) return undefined;
  return numberValue(name, { type: 'int', help: '', min, max }, v);
}

export function listFlag(args: ParsedArgs, name: string): string[] {
  const v = args.values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export function boolFlag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

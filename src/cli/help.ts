/**
 * Every flag is declared once, with its help (as vitest's cli-config): the node:util parser, the
 * value checks and `--help` are all built from that declaration.
 */
export interface Flag {
  /** int and number are strings to the parser, checked here against min/max. */
  type: 'string' | 'boolean' | 'int' | 'number';
  /** What --help shows after the flag: FILE, N, LIST. */
  value?: string;
  /** One line or more ("\n" continues under the first); say the default here. */
  help: string;
  multiple?: boolean;
  short?: string;
  min?: number;
  max?: number;
  /** Older spellings still accepted, folded into this name. */
  aliases?: string[];
  /** A heading in --help above this flag (launch groups its flags). */
  section?: string;
}

export type Flags = Record<string, Flag>;

/** A command (or subcommand): its usage line, what it does, its flags, a closing paragraph. */
export interface CommandSpec {
  name: string;
  usage: string;
  about: string;
  flags: Flags;
  footer?: string;
  positionals?: boolean;
}

/** `--help` of a command, built from its declaration. */
export function helpText(spec: CommandSpec): string {
  const label = (name: string, f: Flag) => `${f.short ? `-${f.short}, ` : ''}--${name}${f.value ? ` ${f.value}` : ''}`;
  const entries = Object.entries(spec.flags);
  const width = Math.min(24, Math.max(0, ...entries.map(([n, f]) => label(n, f).length)));
  const lines = [`Usage: ${spec.usage}`, '', spec.about];
  let section: string | undefined;
  if (entries.length > 0) lines.push('');
  for (const [name, f] of entries) {
    if (f.section !== undefined && f.section !== section) lines.push(`${(section = f.section)}:`);
    const head = `  ${label(name, f)}`;
    const [first, ...more] = f.help.split('\n');
    const pad = width + 4;
    lines.push(head.length + 2 > pad ? `${head}\n${' '.repeat(pad)}${first}` : `${head.padEnd(pad)}${first}`);
    for (const m of more) lines.push(`${' '.repeat(pad)}${m}`);
  }
  if (spec.footer) lines.push('', spec.footer);
  return lines.join('\n');
}

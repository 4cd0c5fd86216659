import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseFlags, type CommandSpec } from '../src/cli/args.js';
import { SPEC as DEVICES } from '../src/cli/devices.js';
import { helpText } from '../src/cli/help.js';
import { SPEC as LAUNCH } from '../src/cli/launch.js';
import { SPEC as LOGS } from '../src/cli/logs.js';
import { SUBS as RANKTABLE } from '../src/cli/ranktable.js';

// One declaration per flag: --help, the parser and the README's synopsis must all say the same.
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const specs: CommandSpec[] = [LAUNCH, DEVICES, LOGS, ...Object.values(RANKTABLE)];

describe('flags declared once', () => {
  it('--help lists every declared flag (and its aliases nowhere else than in words)', () => {
    for (const spec of specs) {
      const help = helpText(spec);
      expect(help.startsWith(`Usage: ${spec.usage}`)).toBe(true);
      for (const name of Object.keys(spec.flags))
        expect(help, `${spec.name} --${name}`).toMatch(new RegExp(`^ {2}(-\\w, )?--${name}\\b`, 'm'));
    }
  });

  it('the parser accepts every declared flag and alias, and checks numbers by the declaration', () => {
    for (const spec of specs) {
      for (const [name, f] of Object.entries(spec.flags)) {
        const value = f.type === 'boolean' ? [] : [f.type === 'int' || f.type === 'number' ? String(f.min ?? 1) : 'x'];
        for (const n of [name, ...(f.aliases ?? [])]) {
          const args = parseFlags(spec, [`--${n}`, ...value]);
          expect(args.values[name], `${spec.name} --${n}`).toBeDefined();
        }
        if (f.type === 'int') expect(() => parseFlags(spec, [`--${name}`, '1.5'])).toThrow(/is not a whole number/);
      }
    }
  });

  it("the README's launch synopsis names every launch flag, and no flag launch does not have", () => {
    const synopsis = /```sh\nnpurun launch ([\s\S]*?)```/.exec(README)?.[1] ?? '';
    const inReadme = new Set([...synopsis.matchAll(/--([a-z-]+)/g)].map((m) => m[1]));
    expect(inReadme).toEqual(new Set(Object.keys(LAUNCH.flags)));
  });

  it('the README Commands table has a row for every command npurun knows', () => {
    const main = readFileSync(new URL('../src/cli/main.ts', import.meta.url), 'utf8');
    const commands = [...main.matchAll(/^ {2}(\w+): \{\s+summary:/gm)].map((m) => m[1] as string);
    expect(commands.length).toBeGreaterThan(8);
    const table = README.slice(README.indexOf('## Commands'), README.indexOf('## Launch'));
    for (const c of commands) expect(table, c).toMatch(new RegExp(`^\\| \`${c}\\b|, \`${c}\\b`, 'm'));
  });
});

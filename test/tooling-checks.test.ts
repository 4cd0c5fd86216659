import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

// The checks `npm test` runs besides vitest, each run as a process on a small tree that passes or
// breaks exactly what it checks; and the package carrying every file the runtime reads.
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tree(files: Record<string, string>, git = true): string {
  const dir = mkdtempSync(join(tmpdir(), 'npurun-tooling-'));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  if (git) execFileSync('git', ['init', '-q'], { cwd: dir });
  return dir;
}

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

const python = (cwd: string) => run('/usr/bin/python3', ['-B', join(ROOT, 'scripts/check-python.py')], cwd);
const cycles = (cwd: string) => run(process.execPath, [join(ROOT, 'scripts/check-cycles.mjs')], cwd);

describe('python check (scripts/check-python.py)', () => {
  it('passes Python 3.7 code and writes no __pycache__; zero files is fine', () => {
    const dir = tree({
      'src/agent/ok.py':
        'from typing import List\n\ndef f(x: List[int]) -> int:\n    y: list[int] = x\n    return y[0]\n',
    });
    expect(python(dir)).toMatchObject({ status: 0 });
    expect(run('find', ['.', '-name', '__pycache__'], dir).out).toBe('');
    expect(python(tree({})).out).toMatch(/0 file\(s\) compiled/);
  });
  it('fails on a syntax error anywhere, and on 3.8+ grammar or evaluated 3.9+ annotations on the host side', () => {
    const dir = tree({
      'bench/broken.py': 'def f(:\n',
      'bench/newer.py': 'if (n := 1):\n    pass\n',
      'src/agent/walrus.py': 'if (n := 1):\n    pass\n',
      'templates/x/generic.py': 'def f(x: dict[str, int]) -> int | None:\n    return None\n',
      'test/programs/later.py':
        'from __future__ import annotations\n\ndef f(x: dict[str, int]) -> int | None:\n    return None\n',
    });
    const r = python(dir);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/bench\/broken\.py:1: invalid syntax/);
    expect(r.out).not.toMatch(/bench\/newer\.py/);
    expect(r.out).toMatch(/src\/agent\/walrus\.py:1: not Python 3\.7: Assignment expressions/);
    expect(r.out).toMatch(/templates\/x\/generic\.py:1: `dict\[\.\.\.\]` in an annotation needs Python 3\.9/);
    expect(r.out).toMatch(/templates\/x\/generic\.py:1: `X \| Y` in an annotation needs Python 3\.10/);
    expect(r.out).not.toMatch(/later\.py/);
  });
  it('outside a git checkout, finds the files by walking the folders', () => {
    const r = python(tree({ 'src/agent/broken.py': 'def f(:\n', 'src/agent/__pycache__/x.py': 'def f(:\n' }, false));
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/src\/agent\/broken\.py:1: invalid syntax/);
    expect(r.out).toMatch(/1 file\(s\) compiled/);
  });
});

describe('cycle check (scripts/check-cycles.mjs)', () => {
  const tsconfig = JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } });
  it('passes an acyclic tree', () => {
    const dir = tree({
      'tsconfig.json': tsconfig,
      'src/a.ts': "import { b } from './b.js';\nexport const a = b;\n",
      'src/b.ts': 'export const b = 1;\n',
    });
    expect(cycles(dir)).toMatchObject({ status: 0 });
  });
  it('fails on a cycle, dynamic imports included, and on an import it cannot resolve', () => {
    const dir = tree({
      'tsconfig.json': tsconfig,
      'src/a.ts': "import { b } from './x/b.js';\nexport const a = b;\n",
      'src/x/b.ts': "export const b = 1;\nexport const later = () => import('../a.js');\n",
    });
    const r = cycles(dir);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/import cycle in src\/: a\.ts > x\/b\.ts/);
    writeFileSync(join(dir, 'src/x/b.ts'), "import { gone } from './gone.js';\nexport const b = gone;\n");
    expect(cycles(dir).out).toMatch(/cannot resolve \.\/gone\.js/);
  });
});

describe('package', () => {
  it('carries every file the runtime reads: schemas, templates, host-side Python', () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' }),
    ) as { files: { path: string }[] }[];
    const files = new Set(packed[0]?.files.map((f) => f.path));
    const tracked = execFileSync('git', ['ls-files', 'schemas', 'templates', 'src/**/*.py', 'bin'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    const needed = tracked.split('\n').filter((f) => f !== '');
    expect(needed.length).toBeGreaterThan(5);
    expect(needed.filter((f) => !files.has(f))).toEqual([]);
  });
});

describe('layering', () => {
  /** src/ files (relative) that start processes: node:child_process or execa imported. */
  function spawners(root: string): string[] {
    const out = execFileSync(
      'git',
      ['grep', '-l', '-E', "from 'node:child_process'|import\\('execa'\\)|from 'execa'", '--', 'src'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    return out.split('\n').filter((f) => f !== '');
  }

  it('processes are started only in src/transport/ (src/README.md), and the check sees one that is not', () => {
    expect(spawners(ROOT).filter((f) => !f.startsWith('src/transport/'))).toEqual([]);
    const dir = tree({ 'src/devices/probe.ts': "import { spawn } from 'node:child_process';\n" });
    execFileSync('git', ['add', '-A'], { cwd: dir });
    expect(spawners(dir)).toEqual(['src/devices/probe.ts']);
  });
});

import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeDirs } from '../src/make-dirs.js';

describe('makeDirs (mkdir -p that always returns)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'npurun-mkdirs-'));

  it('makes every missing level, and is quiet when the directory exists', () => {
    makeDirs(join(tmp, 'a', 'b', 'c'));
    expect(statSync(join(tmp, 'a', 'b', 'c')).isDirectory()).toBe(true);
    makeDirs(join(tmp, 'a', 'b', 'c'));
  });

  it('a path under /proc throws at once (Node 20 recursive mkdirSync never returns there)', () => {
    const started = Date.now();
    expect(() => makeDirs('/proc/npurun-x/y')).toThrow(/ENOENT|EACCES|EPERM/);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a file in the way is an error, not a directory', () => {
    writeFileSync(join(tmp, 'f'), '');
    expect(() => makeDirs(join(tmp, 'f', 'sub'))).toThrow(/ENOTDIR|EEXIST/);
    expect(() => makeDirs(join(tmp, 'f'))).toThrow(/EEXIST/);
  });
});

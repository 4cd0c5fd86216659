import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * `mkdir -p`, one level at a time. Node 20's `mkdirSync(dir, { recursive: true })` never returns for
 * a path under /proc (found with `--runs-dir /proc/x`: the launcher spun at full CPU); here the
 * first level that cannot be made throws its error (ENOENT, EACCES, ENOTDIR...) at once.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  let cur = dir;
  for (;;) {
    try {
      if (statSync(cur).isDirectory()) break;
      // A file where a directory is wanted: mkdir reports it (EEXIST) below.
      missing.push(cur);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.push(cur);
      const parent = dirname(cur);
      if (parent === cur) break;
      cur = parent;
    }
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(d).isDirectory()) throw err;
    }
  }
}

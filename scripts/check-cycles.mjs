#!/usr/bin/env node
// Fails when a module under src/ imports itself through others (static, dynamic and type-only
// imports all count): the folders follow the data path, and a cycle means a layer reaches back.
import madge from 'madge';

// Cycles that exist today and are being removed; any other cycle fails. Issue 15.1 moves scanRun
// out of cli/ckpt.ts, which ends the one below: then delete its line.
const KNOWN = new Set(['cli/ckpt.ts > cli/launch.ts']);

const result = await madge('src', { fileExtensions: ['ts'], tsConfig: 'tsconfig.json' });
const cycles = result.circular().map((c) => c.join(' > '));
const added = cycles.filter((c) => !KNOWN.has(c));
const gone = [...KNOWN].filter((c) => !cycles.includes(c));
for (const c of gone) console.log(`cycles: ${c} is gone: remove it from KNOWN in scripts/check-cycles.mjs`);
for (const c of added) console.error(`cycles: import cycle in src/: ${c}`);
// An import madge cannot resolve is an edge it does not see, and a cycle through it would pass.
const { skipped } = result.warnings();
for (const s of skipped) console.error(`cycles: cannot resolve ${s}: the import graph is incomplete`);
const files = Object.keys(result.obj()).length;
if (added.length > 0 || skipped.length > 0) process.exitCode = 1;
else
  console.log(
    `cycles: none new among ${files} modules in src/${KNOWN.size - gone.length ? ` (${KNOWN.size - gone.length} known, being removed)` : ''}`,
  );

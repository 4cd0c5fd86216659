#!/usr/bin/env node
// Fails when a module under src/ imports itself through others (static, dynamic and type-only
// imports all count): the folders follow the data path, and a cycle means a layer reaches back.
import madge from 'madge';

const result = await madge('src', { fileExtensions: ['ts'], tsConfig: 'tsconfig.json' });
const cycles = result.circular().map((c) => c.join(' > '));
for (const c of cycles) console.error(`cycles: import cycle in src/: ${c}`);
// An import madge cannot resolve is an edge it does not see, and a cycle through it would pass.
const { skipped } = result.warnings();
for (const s of skipped) console.error(`cycles: cannot resolve ${s}: the import graph is incomplete`);
const files = Object.keys(result.obj()).length;
if (cycles.length > 0 || skipped.length > 0) process.exitCode = 1;
else console.log(`cycles: none among ${files} modules in src/`);

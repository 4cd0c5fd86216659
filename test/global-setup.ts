import { ensureBuilt } from './helpers/cli-build.js';

// Once per vitest run, before any file: process tests spawn `node bin/npurun`, which runs dist/, so a
// single-file run (`npx vitest run test/x.test.ts`) must not test a dist/ older than src/.
export default async function setup(): Promise<void> {
  await ensureBuilt();
}

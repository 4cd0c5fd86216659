import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The binary the process tests spawn: `node bin/npurun ...`, which runs dist/. */
export const NPURUN_BIN = join(ROOT, 'bin', 'npurun');
const ENTRY = join(ROOT, 'dist', 'cli', 'main.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function builtAt(): number {
  try {
    return statSync(ENTRY).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Rebuilds dist/ when a file under src/ is newer than it, so process tests never run stale code.
 * Type errors elsewhere (files others are editing) do not stop tsc from emitting; a missing entry does.
 */
export async function ensureBuilt(): Promise<void> {
  if (builtAt() >= newestMtime(join(ROOT, 'src'))) return;
  // Whole seconds: some file systems keep coarse modification times.
  const started = Math.floor(Date.now() / 1000) * 1000;
  const tsc = await execa(
    'node',
    [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
    { reject: false, cwd: ROOT },
  );
  if (builtAt() < started)
    throw new Error(`tsc -p tsconfig.build.json did not write ${ENTRY}:\n${tsc.stdout}\n${tsc.stderr}`);
}

import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readRunRecord, RUN_RECORD_FILE } from '../run-folder/record.js';

/**
 * The run folder a report or dashboard is about: RUN is a folder holding run.json (any path), a run
 * id or unique prefix in `runsDir`, or nothing (the newest run there).
 */
export function locateRunDir(runsDir: string, run: string | undefined): string {
  if (run !== undefined && existsSync(join(run, RUN_RECORD_FILE)) && statSync(run).isDirectory()) return resolve(run);
  return readRunRecord(runsDir, run).dir;
}

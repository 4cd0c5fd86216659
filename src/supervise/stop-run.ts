import { writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { launcherState, STOP_REQUEST_FILE, type RunInfo } from '../run-folder/record.js';

/**
 * A deliberate stop of a live run (`npurun kill RUN` on the launching machine): leaves a note saying
 * who stopped it in the run folder, then sends the launcher SIGTERM, so the run stops the way a Ctrl-C
 * stops it (every rank on every host, with the grace period) and is recorded as stopped by that
 * request, not as a failure of the first rank that received SIGTERM. Resolves once the launcher is
 * gone; 'not-running' when there is no live launcher here to ask (then the caller stops the ranks).
 */
export async function stopLauncher(info: RunInfo, waitSeconds: number): Promise<'stopped' | 'not-running'> {
  const record = info.record;
  if (record.status !== 'running' || launcherState(record) !== 'alive') return 'not-running';
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry: keep "unknown"
  }
  writeFileSync(
    join(info.dir, STOP_REQUEST_FILE),
    JSON.stringify({ by: `npurun kill (user ${user}, pid ${process.pid})`, at: new Date().toISOString() }) + '\n',
  );
  try {
    process.kill(record.launcher_pid, 'SIGTERM');
  } catch {
    return 'not-running';
  }
  const end = Date.now() + waitSeconds * 1000;
  while (Date.now() < end && launcherState(record) === 'alive') await new Promise((r) => setTimeout(r, 100));
  return 'stopped';
}

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { inputError } from '../errors.js';

/**
 * OpenSSH's client asked what it would use for a host (`ssh -G`): the one place npurun runs `ssh`.
 * The inventory receives the query as a function (inventory/ imports nothing from transport/).
 */

/** The `ssh` client on PATH, or undefined where none is installed. */
export function findSshClient(path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'ssh');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Cost, measured 2026-11-23 on 2 shared cores (load ~10): one `ssh -G` takes ~5.7 ms of CPU and 20-30 ms
 * of wall time; 512 hosts took 12-15 s whether run 1, 4, 16 or 32 at a time (the cores were the limit).
 * On an idle machine that is ~3 CPU-seconds, spread over its cores. Every remote host is still asked:
 * skipping hosts the own parser "could" resolve would miss /etc/ssh/ssh_config, Match and tokens, which
 * is the point of asking ssh. At most 16 run at once, so 512 hosts never start 512 processes.
 */
export const SSH_G_CONCURRENCY = 16;

/** A bounded queue: at most `limit` calls of `fn` run at once. */
function bounded<A extends unknown[], R>(limit: number, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (...args) => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await fn(...args);
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

/**
 * `ssh -G [-F configFile] [-l user] [-p port] -- host`, stdout returned. Without `configFile`, ssh reads
 * ~/.ssh/config and /etc/ssh/ssh_config as it always does. A config ssh refuses is bad input (exit 2),
 * with ssh's own words (file and line).
 */
export function sshConfigQuery(ssh: string, configFile: string | undefined, limit = SSH_G_CONCURRENCY) {
  return bounded(limit, async (host: string, explicit: { user?: string; port?: number }): Promise<string> => {
    const args = ['-G', '-T'];
    if (configFile !== undefined) args.push('-F', configFile);
    if (explicit.user !== undefined) args.push('-l', explicit.user);
    if (explicit.port !== undefined) args.push('-p', String(explicit.port));
    args.push('--', host);
    // Loaded here: a local launch never asks ssh, and execa costs ~70 ms to import.
    const { execa } = await import('execa');
    const r = await execa(ssh, args, { reject: false, stdin: 'ignore', timeout: 30_000 });
    if (r.exitCode !== 0 || r.failed) {
      const why =
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => !/^Pseudo-terminal/.test(l))
          .join('; ') || r.shortMessage;
      throw inputError(configFile ?? '~/.ssh/config', `ssh -G ${host} refused the SSH configuration: ${why}`);
    }
    return r.stdout;
  });
}

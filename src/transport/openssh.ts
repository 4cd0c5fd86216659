import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { inputError } from '../errors.js';
import { shellQuote } from '../shell.js';

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
 * Cost, measured 2026-11-23 on 2 shared cores: one `ssh -G` takes ~4-6 ms of CPU; started from Node
 * (execa) each also cost the launcher ~2.5 ms of its own single thread. So hosts are asked in batches:
 * one `sh` per batch runs `ssh -G` for each of its hosts in turn (~0.2 ms of launcher CPU per host),
 * at most SSH_G_CONCURRENCY batches at once. Every remote host is still asked: skipping hosts the own
 * parser "could" resolve would miss /etc/ssh/ssh_config, Match and tokens, which is the point of asking ssh.
 */
export const SSH_G_CONCURRENCY = 4;
/** Hosts per `sh`: 512 hosts make 16 batches, 4 running at a time. */
export const SSH_G_BATCH = 32;

const END = '@@npurun-ssh-g-end@@';

interface Asked {
  host: string;
  explicit: { user?: string; port?: number };
  resolve: (output: string) => void;
  reject: (err: Error) => void;
}

/** The shell lines asking ssh about one host: its settings on stdout, then its exit code and stderr. */
function askLines(ssh: string, configFile: string | undefined, a: Asked): string {
  const args = ['-G', '-T'];
  if (configFile !== undefined) args.push('-F', configFile);
  if (a.explicit.user !== undefined) args.push('-l', a.explicit.user);
  if (a.explicit.port !== undefined) args.push('-p', String(a.explicit.port));
  args.push('--', a.host);
  const cmd = [ssh, ...args].map(shellQuote).join(' ');
  return `err=$(${cmd} 2>&1 >&4 </dev/null); printf '\n${END} %s\n%s\n${END}\n' "$?" "$err"`;
}

/**
 * `ssh -G [-F configFile] [-l user] [-p port] -- host`, stdout returned. Without `configFile`, ssh reads
 * ~/.ssh/config and /etc/ssh/ssh_config as it always does. A config ssh refuses is bad input (exit 2),
 * with ssh's own words (file and line). Calls made together (in one tick) are asked in batches.
 */
export function sshConfigQuery(ssh: string, configFile: string | undefined, concurrency = SSH_G_CONCURRENCY) {
  let queued: Asked[] = [];
  const batches: Asked[][] = [];
  let running = 0;
  const refused = (a: Asked, why: string) =>
    inputError(configFile ?? '~/.ssh/config', `ssh -G ${a.host} refused the SSH configuration: ${why}`);
  const runBatch = async (batch: Asked[]): Promise<void> => {
    const script = ['exec 4>&1', ...batch.map((a) => askLines(ssh, configFile, a))].join('\n');
    // node:child_process, not execa (~70 ms to import, on every launch over SSH).
    const r = await new Promise<{ stdout: string; stderr: string; error?: string }>((resolve) =>
      execFile(
        'sh',
        ['-c', script],
        { timeout: 30_000 + 5_000 * batch.length, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout, stderr) => resolve({ stdout, stderr, ...(err ? { error: err.message } : {}) }),
      ),
    );
    const blocks = r.stdout.split(`\n${END}\n`);
    batch.forEach((a, i) => {
      const block = blocks[i];
      const m = block === undefined ? null : new RegExp(`\\n${END} (\\d+)\\n([^]*)$`).exec(block);
      if (!m || block === undefined) {
        a.reject(refused(a, r.stderr.trim() || r.error || 'no answer'));
        return;
      }
      const why = (m[2] ?? '')
        .trim()
        .split('\n')
        .filter((l) => !/^Pseudo-terminal/.test(l))
        .join('; ');
      if (m[1] !== '0') a.reject(refused(a, why || `exit ${m[1]}`));
      else a.resolve(block.slice(0, m.index));
    });
  };
  const pump = () => {
    while (running < concurrency && batches.length > 0) {
      const batch = batches.shift() as Asked[];
      running++;
      runBatch(batch)
        .catch((err: unknown) => {
          for (const a of batch) a.reject(err instanceof Error ? err : new Error(String(err)));
        })
        .finally(() => {
          running--;
          pump();
        });
    }
  };
  return (host: string, explicit: { user?: string; port?: number }): Promise<string> =>
    new Promise((resolve, reject) => {
      if (queued.length === 0)
        setImmediate(() => {
          for (let i = 0; i < queued.length; i += SSH_G_BATCH) batches.push(queued.slice(i, i + SSH_G_BATCH));
          queued = [];
          pump();
        });
      queued.push({ host, explicit, resolve, reject });
    });
}

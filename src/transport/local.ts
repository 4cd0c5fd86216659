import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { NpurunError } from '../errors.js';
import type { HostSpec } from '../plan/types.js';
import { GUARD_BOOTSTRAP, guardPreamble, type GuardSpec } from './guard.js';
import { Heartbeat, guardControl } from './heartbeat.js';
import type { CommandResult, DirEntry, HostTransport, RankEnd, RankProcess } from './types.js';

/** The launching machine itself: processes started with execa, the same guard as on remote hosts. */
export class LocalTransport implements HostTransport {
  private readonly heartbeat = new Heartbeat();

  constructor(readonly host: HostSpec) {}

  async exec(command: string, input = ''): Promise<CommandResult> {
    const r = await execa('sh', ['-c', command], { input, reject: false, stripFinalNewline: false });
    return { stdout: r.stdout, stderr: r.stderr, code: r.exitCode ?? null, signal: r.signal ?? null };
  }

  async startRank(spec: GuardSpec): Promise<RankProcess> {
    // Detached: a Ctrl-C on the terminal reaches npurun, which stops ranks with the grace period,
    // instead of hitting the guards and ranks directly.
    const child = execa('sh', ['-c', GUARD_BOOTSTRAP], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      detached: true,
      cleanup: false,
    });
    const stdin = child.stdin;
    const stdout = child.stdout;
    const stderr = child.stderr;
    if (!stdin || !stdout || !stderr) throw new NpurunError('runtime', `local: cannot open pipes for rank ${spec.label}`);
    stdin.on('error', () => {}); // the guard may be gone already; its end is reported through `ended`
    stdin.write(guardPreamble(spec));
    const control = guardControl(stdin);
    this.heartbeat.add(control);
    const ended: Promise<RankEnd> = child.then((r) => {
      this.heartbeat.remove(control);
      stdin.end();
      return { code: r.exitCode ?? null, signal: r.signal ?? null, lost: false };
    });
    return {
      stdout,
      stderr,
      ended,
      stop: (grace) => control.send(`TERM ${grace}`),
      kill: () => control.send('KILL'),
    };
  }

  async putFile(path: string, data: Buffer, mode = 0o644): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.npurun-tmp`;
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
    const back = await readFile(path);
    if (!sha256(back).equals(sha256(data))) throw new NpurunError('runtime', `${this.host.name}: ${path} does not match what was written`);
  }

  async listDir(dir: string): Promise<DirEntry[] | null> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const out: DirEntry[] = [];
    for (const name of names) {
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (st?.isFile()) out.push({ name, size: st.size, mtimeMs: st.mtimeMs });
    }
    return out;
  }

  async removeFile(path: string): Promise<void> {
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  onLost(): void {
    // The local machine cannot become unreachable.
  }

  async close(): Promise<void> {
    this.heartbeat.stop();
  }
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

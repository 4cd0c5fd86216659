import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { NPURUN_BIN } from './cli-build.js';

/**
 * A real `npurun launch --simulate N` left running (local mode: the README's demo and every bench row),
 * its ranks carrying TEST_TAG=<unique> through --env so that whatever it started can be found in
 * /proc afterwards, whatever the launcher's design (guards, a per-host agent) is.
 */
export interface LocalRun {
  child: ChildProcess;
  tag: string;
  runsDir: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** The run's folder, once the launcher made it. */
  runDir(): string | undefined;
}

let seq = 0;

export function launchLocal(opts: {
  ranks: number;
  runsDir: string;
  remoteDir: string;
  argv: string[];
  extra?: string[];
}): LocalRun {
  const tag = `${process.pid}-${Date.now()}-${seq++}`;
  const child = spawn(
    process.execPath,
    [
      NPURUN_BIN,
      'launch',
      '--simulate',
      String(opts.ranks),
      '--profile',
      'torch',
      '--console',
      'none',
      '--run-dir',
      opts.runsDir,
      '--remote-dir',
      join(opts.remoteDir, '{run_id}'),
      '--env',
      `TEST_TAG=${tag}`,
      ...(opts.extra ?? []),
      '--',
      ...opts.argv,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const runDir = (): string | undefined => {
    const dirs = existsSync(opts.runsDir)
      ? readdirSync(opts.runsDir).filter((d) => existsSync(join(opts.runsDir, d, 'run.json')))
      : [];
    return dirs.length === 1 ? join(opts.runsDir, dirs[0] as string) : undefined;
  };
  return { child, tag, runsDir: opts.runsDir, exited, stderr: () => err, runDir };
}

/** Live (non-zombie) processes whose environment holds TEST_TAG=<tag>. */
export function taggedPids(tag: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (!readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes(`TEST_TAG=${tag}`)) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      if (stat[stat.lastIndexOf(')') + 2] !== 'Z') found.push(Number(d));
    } catch {
      // Gone while we looked.
    }
  }
  return found;
}

/** Lines of merged.log once it holds `count` lines containing `text` (polled), or throws after `ms`. */
export async function waitForLines(run: LocalRun, text: string, count: number, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const dir = run.runDir();
    const merged = dir ? join(dir, 'merged.log') : undefined;
    const n =
      merged && existsSync(merged)
        ? readFileSync(merged, 'utf8')
            .split('\n')
            .filter((l) => l.includes(text)).length
        : 0;
    if (n >= count) return;
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${count} lines "${text}" (have ${n}); npurun said: ${run.stderr()}`);
    if (run.child.exitCode !== null || run.child.signalCode !== null)
      throw new Error(
        `npurun exited (${run.child.exitCode ?? run.child.signalCode}) before ${count} lines "${text}": ${run.stderr()}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls taggedPids(tag) until none are left or `ms` pass; returns the last answer. */
export async function waitForNoTagged(tag: string, ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  let left = taggedPids(tag);
  while (left.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    left = taggedPids(tag);
  }
  return left;
}

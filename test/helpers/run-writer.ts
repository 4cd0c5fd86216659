import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RunPlan } from '../../src/plan/types.js';

/** Helpers for process tests of run folders: the real CLI, and a separate process that records a run. */

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RECORDER = fileURLToPath(new URL('../../dist/run-folder/recorder.js', import.meta.url));

export function requireBuild(): void {
  if (!existsSync(RECORDER))
    throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` before the CLI tests');
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/npurun ...args`, to completion. */
export function npurun(args: string[], cwd = ROOT, env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [`${ROOT}/bin/npurun`, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `node bin/npurun ...args` left running, output collected. */
export function npurunLive(args: string[]): {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [`${ROOT}/bin/npurun`, ...args], { cwd: ROOT });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, exited };
}

export type WriterCommand =
  | { op: 'write'; label: string; stream: 'stdout' | 'stderr'; text: string }
  | { op: 'exit'; label: string; code: number }
  | { op: 'finish'; status: 'succeeded' | 'failed'; exitCode: number; rootCause?: string };

// The writer: a stand-in for `npurun launch` that records a run with the real RunRecorder, driven
// by JSON commands on stdin, so tests can follow it live or SIGKILL it mid-run.
const WRITER_SOURCE = `
import { createInterface } from 'node:readline';
const { RunRecorder } = await import(process.env.RECORDER_MODULE);
const plan = JSON.parse(process.env.RUN_PLAN);
const rec = await RunRecorder.create({ runsDir: process.env.RUNS_DIR, plan, argv: ['npurun', 'launch'], console: 'none' });
const streams = new Map();
const streamOf = (label, which) => {
  const key = label + ':' + which;
  if (!streams.has(key)) streams.set(key, rec.stream(label, which));
  return streams.get(key);
};
process.stdout.write('ready\\n');
for await (const text of createInterface({ input: process.stdin })) {
  const c = JSON.parse(text);
  if (c.op === 'write') streamOf(c.label, c.stream).write(c.text);
  if (c.op === 'exit') rec.rankExited(c.label, { code: c.code, signal: null, cause: 'exited', rootCause: c.code !== 0 });
  if (c.op === 'finish') {
    for (const s of streams.values()) s.end();
    await rec.finish({ status: c.status, exitCode: c.exitCode, rootCause: c.rootCause });
    process.exit(0);
  }
}
`;

export interface RunWriter {
  child: ChildProcessWithoutNullStreams;
  send(command: WriterCommand): void;
  exited: Promise<void>;
}

/** Starts the writer process and resolves once its run folder exists. */
export async function startRunWriter(runsDir: string, plan: RunPlan): Promise<RunWriter> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', WRITER_SOURCE], {
    env: { ...process.env, RECORDER_MODULE: RECORDER, RUN_PLAN: JSON.stringify(plan), RUNS_DIR: runsDir },
  });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`run writer exited (${code}) before it was ready: ${err}`)));
  });
  return { child, send: (c) => child.stdin.write(JSON.stringify(c) + '\n'), exited };
}

/** Polls `check` until it holds (or fails after `ms`). */
export async function until(check: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

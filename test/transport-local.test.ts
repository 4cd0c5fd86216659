import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { GUARD_BOOTSTRAP, guardPreamble, type GuardSpec } from '../src/transport/guard.js';
import { LocalTransport } from '../src/transport/local.js';
import type { HostSpec } from '../src/plan/types.js';

const host: HostSpec = { name: 'local', address: '127.0.0.1', local: true, devices: 'auto' };
const dir = mkdtempSync(join(tmpdir(), 'npurun-guard-'));

function spec(label: string, argv: string[], extra: Partial<GuardSpec> = {}): GuardSpec {
  return {
    runId: 'test', label, argv, env: {}, cwd: join(dir, `rank${label}`), cpus: [],
    pidFile: join(dir, 'pids', `${label}.json`), heartbeatTimeout: 0, orphanGrace: 1, ...extra,
  };
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let s = '';
  for await (const chunk of stream) s += chunk.toString();
  return s;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (cond()) return true; await new Promise((r) => setTimeout(r, 50)); }
  return cond();
}

describe('guard on the local transport', () => {
  it('reports the exit code of the rank', async () => {
    const t = new LocalTransport(host);
    const p = await t.startRank(spec('0', ['sh', '-c', 'echo out; echo err >&2; exit 7']));
    const [out, err, end] = await Promise.all([collect(p.stdout), collect(p.stderr), p.ended]);
    expect(end).toEqual({ code: 7, signal: null, lost: false });
    expect(out).toBe('out\n');
    expect(err).toBe('err\n');
    await t.close();
  });

  it('passes argv and env byte for byte, runs in its working dir, pinned to its cpus', async () => {
    const t = new LocalTransport(host);
    const hostile = `a 'b' "c" $(touch ${dir}/pwned) \`id\` ; | & \n newline $HOME \\ ümlaut 日本`;
    const code = 'import json,os,sys;print(json.dumps({"argv":sys.argv[1:],"v":os.environ["HOSTILE"],"cwd":os.getcwd(),"cpus":sorted(os.sched_getaffinity(0))}))';
    const p = await t.startRank(spec('1', ['python3', '-c', code, hostile, ''], { env: { HOSTILE: hostile }, cpus: [0] }));
    const [out, , end] = await Promise.all([collect(p.stdout), collect(p.stderr), p.ended]);
    expect(end.code).toBe(0);
    const got = JSON.parse(out) as { argv: string[]; v: string; cwd: string; cpus: number[] };
    expect(got.argv).toEqual([hostile, '']);
    expect(got.v).toBe(hostile);
    expect(got.cwd).toBe(join(dir, 'rank1'));
    expect(got.cpus).toEqual([0]);
    expect(existsSync(join(dir, 'pwned'))).toBe(false);
    await t.close();
  });

  it('stop() sends SIGTERM to the whole group and reports the signal', async () => {
    const t = new LocalTransport(host);
    const p = await t.startRank(spec('2', ['sh', '-c', 'sleep 60 & echo $! ; wait']));
    let out = '';
    p.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    p.stderr.resume();
    await waitFor(() => out.includes('\n'), 5000);
    const child = Number(out.trim());
    expect(alive(child)).toBe(true);
    p.stop(5);
    const end = await p.ended;
    expect(end.signal).toBe('SIGTERM');
    expect(await waitFor(() => !alive(child), 3000)).toBe(true);
    await t.close();
  });

  it('a program that does not exist ends with 127 and a message naming it', async () => {
    const t = new LocalTransport(host);
    const p = await t.startRank(spec('3', ['/nonexistent/train.py']));
    const [, err, end] = await Promise.all([collect(p.stdout), collect(p.stderr), p.ended]);
    expect(end.code).toBe(127);
    expect(err).toMatch(/cannot start \/nonexistent\/train\.py: FileNotFoundError/);
    await t.close();
  });

  it('the guard stops the rank when its input closes or the heartbeat stops', async () => {
    for (const [label, extra, closeInput] of [['4', {}, true], ['5', { heartbeatTimeout: 1 }, false]] as const) {
      const s = spec(label, ['sleep', '60'], extra);
      const guard = execa('sh', ['-c', GUARD_BOOTSTRAP], { stdin: 'pipe', reject: false, buffer: false, detached: true });
      guard.stdin!.write(guardPreamble(s));
      expect(await waitFor(() => existsSync(s.pidFile), 5000)).toBe(true);
      const { pid } = JSON.parse(readFileSync(s.pidFile, 'utf8')) as { pid: number };
      expect(alive(pid)).toBe(true);
      if (closeInput) guard.stdin!.end();
      expect(await waitFor(() => !alive(pid), 5000)).toBe(true);
      const r = await guard;
      expect(r.signal).toBe('SIGTERM');
      expect(existsSync(s.pidFile)).toBe(false);
    }
  });
});

describe('leftovers by pid file', () => {
  it('lists a run whose guard was killed and kills its group, leaving other runs alone', async () => {
    const { listLeftovers, killLeftovers } = await import('../src/supervise/leftovers.js');
    const root = mkdtempSync(join(tmpdir(), 'npurun-left-'));
    const template = join(root, '{run_id}');
    const start = (runId: string) => {
      const s = spec('0', ['sh', '-c', 'sleep 60 & sleep 60'], { runId, pidFile: join(root, runId, 'pids', '0.json') });
      const guard = execa('sh', ['-c', GUARD_BOOTSTRAP], { stdin: 'pipe', reject: false, buffer: false, detached: true });
      guard.stdin!.write(guardPreamble(s));
      return { s, guard };
    };
    const a = start('run-a');
    const b = start('run-b');
    expect(await waitFor(() => existsSync(a.s.pidFile) && existsSync(b.s.pidFile), 5000)).toBe(true);
    // The guard of run-a dies without cleaning up (as if OOM-killed): its rank keeps running.
    // (Its rank still holds the guard's output pipes, so wait for the exit, not for the streams.)
    const guardExit = new Promise((r) => a.guard.once('exit', r));
    a.guard.kill('SIGKILL');
    await guardExit;
    const t = new LocalTransport(host);
    const before = await listLeftovers(t, template);
    expect(before.map((r) => [r.runId, r.alive])).toEqual([['run-a', true], ['run-b', true]]);
    expect(before[0]!.members.length).toBe(3); // sh and its two sleeps
    const killed = await killLeftovers(t, template, 'run-a', 2);
    expect(killed).toHaveLength(1);
    expect(killed[0]).toMatchObject({ runId: 'run-a', killed: true });
    const after = await listLeftovers(t, template);
    expect(after.map((r) => r.runId)).toEqual(['run-b']);
    expect(after[0]!.alive).toBe(true);
    b.guard.stdin!.end();
    await b.guard;
    await t.close();
  });
});

import { randomUUID } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { HostSpec } from '../src/plan/types.js';
import { killLeftovers, listLeftovers } from '../src/supervise/leftovers.js';
import { AgentClient, agentCommand } from '../src/transport/agent-client.js';
import { LocalTransport } from '../src/transport/local.js';
import type { AgentRun, RankLaunch, RankProcess } from '../src/transport/types.js';

const host: HostSpec = { name: 'local', address: '127.0.0.1', local: true, devices: 'auto' };
const dir = mkdtempSync(join(tmpdir(), 'npurun-agent-'));

function run(id: string, extra: Partial<AgentRun> = {}): AgentRun {
  return { runId: id, host: 'local', runDir: join(dir, 'hostdir', id), heartbeatTimeout: 0, orphanGrace: 1, ...extra };
}

function rank(label: string, argv: string[], extra: Partial<RankLaunch> = {}): RankLaunch {
  return { label, argv, env: {}, cwd: join(dir, `rank${label}`), cpus: [], device: null, ...extra } as RankLaunch;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z');
  } catch {
    return false;
  }
}

/** Pids of processes whose environment carries this marker (what a rank and everything it started inherit). */
function marked(mark: string): number[] {
  const needle = Buffer.from(`NPURUN_TEST_MARK=${mark}`);
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`).includes(needle) && alive(Number(d))) out.push(Number(d));
    } catch {
      // gone, or not ours
    }
  }
  return out;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

async function outputs(p: RankProcess): Promise<[string, string]> {
  const [out, err] = await Promise.all([collect(p.stdout), collect(p.stderr)]);
  return [out.toString('utf8'), err.toString('utf8')];
}

describe('the host agent on a local pipe', () => {
  it('starts every rank of a host at once and reports each exit code, stdout and stderr apart', async () => {
    const t = await LocalTransport.connect(host);
    const [a, b] = await t.startRanks(run('codes'), [
      rank('0', ['sh', '-c', 'echo out0; echo err0 >&2; exit 7']),
      rank('1', ['sh', '-c', 'echo out1']),
    ]);
    const [[out0, err0], [out1], end0, end1] = await Promise.all([outputs(a!), outputs(b!), a!.ended, b!.ended]);
    expect(end0).toEqual({ code: 7, signal: null, lost: false });
    expect(end1).toEqual({ code: 0, signal: null, lost: false });
    expect([out0, err0, out1]).toEqual(['out0\n', 'err0\n', 'out1\n']);
    await t.close();
  });

  it('passes argv and env byte for byte, runs in its working dir, pinned to its cpus', async () => {
    const t = await LocalTransport.connect(host);
    const hostile = `a 'b' "c" $(touch ${dir}/pwned) \`id\` ; | & \n newline $HOME \\ ümlaut 日本`;
    const code =
      'import json,os,sys;print(json.dumps({"argv":sys.argv[1:],"v":os.environ["HOSTILE"],"cwd":os.getcwd(),"cpus":sorted(os.sched_getaffinity(0))}))';
    const [p] = await t.startRanks(run('bytes'), [
      rank('1', ['/usr/bin/python3', '-c', code, hostile, ''], { env: { HOSTILE: hostile }, cpus: [0] }),
    ]);
    const [[out], end] = await Promise.all([outputs(p!), p!.ended]);
    expect(end.code).toBe(0);
    const got = JSON.parse(out) as { argv: string[]; v: string; cwd: string; cpus: number[] };
    expect(got).toEqual({ argv: [hostile, ''], v: hostile, cwd: join(dir, 'rank1'), cpus: [0] });
    expect(existsSync(join(dir, 'pwned'))).toBe(false);
    await t.close();
  });

  it('stopAll sends SIGTERM to each rank and to every process it started; each pid is gone from /proc', async () => {
    const t = await LocalTransport.connect(host);
    const [p] = await t.startRanks(run('stop'), [
      rank('2', ['sh', '-c', 'sleep 60 & echo $!; sleep 61 & echo $!; wait']),
    ]);
    let out = '';
    p!.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p!.stderr.resume();
    expect(await waitFor(() => out.split('\n').length > 2, 5000)).toBe(true);
    const children = out.trim().split('\n').map(Number);
    expect(children.every(alive)).toBe(true);
    await t.stopAll(5);
    const end = await p!.ended;
    expect(end.signal).toBe('SIGTERM');
    expect(end.stoppedBy).toBeDefined();
    expect(await waitFor(() => ![p!.pid as number, ...children].some(alive), 3000)).toBe(true);
    await t.close();
  });

  it('a program that does not exist is a start error naming it, with code 127', async () => {
    const t = await LocalTransport.connect(host);
    const [p] = await t.startRanks(run('missing'), [rank('3', ['/nonexistent/train.py'])]);
    expect(p!.startError).toMatch(/cannot start \/nonexistent\/train\.py: .*No such file/);
    expect((await p!.ended).code).toBe(127);
    await t.close();
  });

  it("a program name is found on the rank's own PATH as execvp finds it: skipping what is not executable or cannot be run, relative entries from the rank's dir", async () => {
    const bins = mkdtempSync(join(tmpdir(), 'npurun-path-'));
    const make = (sub: string, text: string, mode: number) => {
      mkdirSync(join(bins, sub), { recursive: true });
      writeFileSync(join(bins, sub, 'tool'), text, { mode });
    };
    make('a', '#!/bin/sh\necho from-a\n', 0o644); // not executable
    make('b', '\x7fELF not really a program', 0o755); // executable, but exec fails (ENOEXEC)
    make('c', '#!/bin/sh\necho from-c\n', 0o755);
    make('w/rel', '#!/bin/sh\necho from-rank-dir\n', 0o755);
    const path = ['a', 'b', 'c'].map((d) => join(bins, d)).join(':');
    const t = await LocalTransport.connect(host);
    const [p, q, r] = await t.startRanks(run('path'), [
      rank('4', ['tool'], { env: { PATH: path } }),
      rank('5', ['tool'], { env: { PATH: `rel:${path}` }, cwd: join(bins, 'w') }),
      rank('6', ['tool'], { env: { PATH: join(bins, 'a') } }),
    ]);
    const [[outP], [outQ], endR] = await Promise.all([outputs(p!), outputs(q!), r!.ended]);
    expect([outP, outQ]).toEqual(['from-c\n', 'from-rank-dir\n']);
    expect(r!.startError).toMatch(/cannot start tool: .*Permission denied/);
    expect(endR.code).toBe(127);
    await t.close();
  });

  it('setsid and nohup daemons that keep the output open neither block the end nor outlive the rank', async () => {
    const mark = randomUUID();
    const t = await LocalTransport.connect(host);
    const script = 'setsid sh -c "sleep 300" & nohup sleep 301 & (setsid sh -c "sleep 302 &" &); echo started; exit 0';
    const started = Date.now();
    const [p] = await t.startRanks(run('daemons'), [
      rank('4', ['sh', '-c', script], { env: { NPURUN_TEST_MARK: mark } }),
    ]);
    const [[out], end] = await Promise.all([outputs(p!), p!.ended]);
    expect(out).toBe('started\n');
    expect(end.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await waitFor(() => marked(mark).length === 0, 3000)).toBe(true);
    await t.close();
  });

  it('a rank flooding its output does not hold back a quiet rank on the same agent', async () => {
    const t = await LocalTransport.connect(host);
    const flood = ['/usr/bin/python3', '-c', 'import os\nb=b"x"*65535+b"\\n"\nwhile True: os.write(1,b)'];
    const quiet = [
      '/usr/bin/python3',
      '-u',
      '-c',
      'import time,sys\nfor i in range(20):\n print(i, time.time(), flush=True); time.sleep(0.1)',
    ];
    const [f, q] = await t.startRanks(run('flood'), [rank('5', flood), rank('6', quiet)]);
    // Nobody reads the flooding rank: its window fills and the agent stops reading its pipe.
    f!.stderr.resume();
    const lags: number[] = [];
    let pending = '';
    q!.stdout.on('data', (c: Buffer) => {
      const lines = (pending + c.toString()).split('\n');
      pending = lines.pop() as string;
      for (const line of lines) lags.push(Date.now() / 1000 - Number(line.split(' ')[1]));
    });
    q!.stderr.resume();
    expect((await q!.ended).code).toBe(0);
    expect(lags).toHaveLength(20);
    expect(Math.max(...lags)).toBeLessThan(1);
    expect(f!.stdout.readableLength).toBeLessThan(2 * 1024 * 1024);
    await t.stopAll(1);
    f!.stdout.resume();
    await f!.ended;
    await t.close();
  });

  it('a rank is stopped when the agent input closes, or when heartbeats stop, and its pid file goes', async () => {
    for (const [id, extra, closeInput] of [
      ['eof', {}, true],
      ['hb', { heartbeatTimeout: 1 }, false],
    ] as const) {
      const child = execa('sh', ['-c', agentCommand('/usr/bin/python3')], {
        stdin: 'pipe',
        stdout: 'pipe',
        stderr: 'pipe',
        reject: false,
        buffer: false,
        detached: true,
      });
      const agent = new AgentClient(
        child.stdin!,
        child.stdout!,
        { name: 'local', heartbeatMs: closeInput ? 1000 : 3_600_000 },
        child.stderr!,
      );
      await agent.start();
      const r = run(`stop-${id}`, extra);
      const [p] = await agent.startRanks(r, [rank('7', ['sleep', '60'])]);
      p!.stdout.resume();
      p!.stderr.resume();
      const pidFile = join(r.runDir, 'pids', '7.json');
      expect(existsSync(pidFile)).toBe(true);
      expect(alive(p!.pid as number)).toBe(true);
      if (closeInput) child.stdin!.end();
      expect(await waitFor(() => !alive(p!.pid as number), 5000)).toBe(true);
      await child;
      expect(existsSync(pidFile)).toBe(false);
    }
  });

  it('the launcher vanishing while a rank fills its window: the agent stops it, drops its output and exits', async () => {
    for (const close of ['input', 'output'] as const) {
      const child = execa('sh', ['-c', agentCommand('/usr/bin/python3')], {
        stdin: 'pipe',
        stdout: 'pipe',
        stderr: 'pipe',
        reject: false,
        buffer: false,
        detached: true,
      });
      const agent = new AgentClient(child.stdin!, child.stdout!, { name: 'local' }, child.stderr!);
      await agent.start();
      const flood = ['/usr/bin/python3', '-c', 'import os\nb=b"x"*65535+b"\\n"\nwhile True: os.write(1,b)'];
      const [p] = await agent.startRanks(run(`vanish-${close}`), [rank('9', flood)]);
      // Nobody reads: the rank's window fills and the agent stops reading its pipe.
      await new Promise((r) => setTimeout(r, 500));
      if (close === 'input') child.stdin!.destroy();
      else {
        // Output closed: the agent learns it at its next write (here: the reply to a request).
        child.stdout!.destroy();
        void agent.request('list', { dir: '/' }).catch(() => undefined);
      }
      const started = Date.now();
      const r = await child;
      expect(Date.now() - started).toBeLessThan(5000);
      expect(r.exitCode).toBe(0);
      expect(alive(p!.pid as number)).toBe(false);
    }
  });

  it('a killed agent (kill -9) still leaves nothing: its watchdog stops every process of its ranks', async () => {
    const mark = randomUUID();
    const t = await LocalTransport.connect(host);
    const [p] = await t.startRanks(run('killed'), [
      rank('8', ['sh', '-c', 'setsid sleep 300 & sleep 301 & wait'], { env: { NPURUN_TEST_MARK: mark } }),
    ]);
    p!.stdout.resume();
    p!.stderr.resume();
    expect(await waitFor(() => marked(mark).length === 3, 5000)).toBe(true);
    process.kill(t.hello.pid, 'SIGKILL');
    const end = await p!.ended;
    expect(end.lost).toBe(true);
    expect(await waitFor(() => marked(mark).length === 0, 5000)).toBe(true);
  });

  it('ps/kill by pid file: finds a rank and the daemon it escaped to, kills both, leaves another run alone', async () => {
    const template = join(dir, 'leftovers', '{run_id}');
    const run = (id: string) => ({
      runId: id,
      host: 'local',
      runDir: template.replace('{run_id}', id),
      heartbeatTimeout: 0,
      orphanGrace: 1,
    });
    const t = await LocalTransport.connect(host);
    const u = await LocalTransport.connect(host);
    const ma = randomUUID();
    const [a] = await t.startRanks(run('left-a'), [
      rank('0', ['sh', '-c', 'setsid sleep 300 & sleep 301'], { env: { NPURUN_TEST_MARK: ma } }),
    ]);
    const [b] = await u.startRanks(run('left-b'), [rank('0', ['sleep', '302'])]);
    for (const p of [a, b]) {
      p!.stdout.resume();
      p!.stderr.resume();
    }
    expect(await waitFor(() => marked(ma).length === 3, 5000)).toBe(true);
    const other = await LocalTransport.connect(host);
    const before = await listLeftovers(other, template);
    expect(before.map((r) => [r.runId, r.alive])).toEqual([
      ['left-a', true],
      ['left-b', true],
    ]);
    expect(before[0]!.members.map((m) => m.pid).sort()).toEqual(marked(ma).sort());
    const killed = await killLeftovers(other, template, 'left-a', 2);
    expect(killed).toEqual([expect.objectContaining({ runId: 'left-a', killed: true })]);
    expect(await waitFor(() => marked(ma).length === 0, 3000)).toBe(true);
    expect(alive(b!.pid as number)).toBe(true);
    await Promise.all([t.close(), u.close(), other.close()]);
  });

  it.runIf(process.getuid?.() === 0)(
    'refuses a run directory another user owns (a planted /tmp/npurun-<user>)',
    async () => {
      const planted = join(dir, 'planted');
      mkdirSync(join(planted, 'run-x'), { recursive: true });
      chownSync(planted, 65534, 65534);
      chownSync(join(planted, 'run-x'), 65534, 65534);
      const t = await LocalTransport.connect(host);
      await expect(
        t.startRanks(run('run-x', { runDir: join(planted, 'run-x') }), [rank('0', ['true'])]),
      ).rejects.toThrow(/belongs to uid 65534, not to this user/);
      await t.close();
    },
  );
});

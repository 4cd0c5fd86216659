import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, startCluster, type Cluster } from './cluster/index.js';

// The host agent over real SSH (issue 19 and 17): one login per host per launch, a killed agent, a
// network blip shorter than the heartbeat timeout, daemons that leave the rank's group, a flooding
// rank beside a quiet one.

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
const runs = mkdtempSync(join(tmpdir(), 'npurun-agent-cluster-'));

function npurun(args: string[]): ResultPromise<{ reject: false; all: true }> {
  return execa('node', [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: '1' } });
}

function runFolders(dir: string): string[] {
  try {
    return readdirSync(dir).map((d) => join(dir, d));
  } catch {
    return [];
  }
}

describeCluster('the host agent over SSH', () => {
  let c: Cluster;
  let hosts3: string;
  let script: (name: string, text: string) => string;
  beforeAll(async () => {
    c = await startCluster(3, { slowLogin: true });
    hosts3 = c.hostsFile(c.hosts);
    const dir = mkdtempSync(join(tmpdir(), 'npurun-agent-scripts-'));
    script = (name, text) => {
      writeFileSync(join(dir, name), text);
      return c.share(join(dir, name));
    };
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    expect(await c.waitForNoLeftovers(8000)).toEqual([]);
  });

  it('one login shell per host per launch, whatever the number of ranks, even with a slow pyenv-like login', async () => {
    const before = await Promise.all(c.hosts.map((h) => c.logins(h)));
    const shimsBefore = await Promise.all(c.hosts.map(async (h) => (await c.shimRuns(h)).length));
    const r = await npurun([
      'launch',
      '--hosts',
      hosts3,
      '--profile',
      'torch',
      '--nproc-per-node',
      '8',
      '--console',
      'none',
      '--run-dir',
      join(runs, 'logins'),
      '--',
      'python3',
      '-c',
      'pass',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    const after = await Promise.all(c.hosts.map((h) => c.logins(h)));
    expect(after.map((a, i) => a.length - (before[i] as unknown[]).length)).toEqual([1, 1, 1]);
    // The ranks run the user's python3 (here a pyenv-like shim): 8 per host, as they asked; the agent
    // itself runs the system python3, not the shim (which queues on pyenv's shared lock).
    const shims = await Promise.all(c.hosts.map(async (h, i) => (await c.shimRuns(h)).length - shimsBefore[i]!));
    expect(shims).toEqual([8, 8, 8]);
  }, 120_000);

  it('an agent killed on one host (kill -9): npurun stops the others, names the host, exits 3; nothing left anywhere', async () => {
    const sleeper = script(
      'sleeper.py',
      'import os, time\nprint("ready", os.environ["RANK"], flush=True)\ntime.sleep(120)\n',
    );
    const run = npurun([
      'launch',
      '--hosts',
      hosts3,
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--console',
      'all',
      '--run-dir',
      join(runs, 'killed'),
      '--',
      '/usr/bin/python3',
      sleeper,
    ]);
    let seen = '';
    run.all?.on('data', (b: Buffer) => (seen += b.toString()));
    const deadline = Date.now() + 60_000;
    while ((seen.match(/ready \d+/g) ?? []).length < 6 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const h2 = c.hosts[1]!;
    // The agent is the python process on h2 whose command line is the bootstrap (-I -S -c).
    const ps = await c.exec(h2, ['sh', '-c', "for p in $(pgrep -f 'exec\\(b.read'); do echo $p; done"]);
    const agentPids = ps.stdout.trim().split('\n').filter(Boolean);
    expect(agentPids.length).toBeGreaterThan(0);
    const killedAt = Date.now();
    await c.exec(h2, ['kill', '-9', ...agentPids]);
    const r = await run;
    expect(r.exitCode, r.all).toBe(3);
    expect(r.all).toMatch(/h2/);
    process.stdout.write(`agent killed: npurun exited ${Date.now() - killedAt} ms later\n`);
  }, 120_000);

  it('a 5 s network cut of one host survives with --heartbeat-timeout 60: exit 0, every line of every rank saved', async () => {
    const counter = script(
      'counter.py',
      'import time\nfor i in range(100):\n    print("tick %03d" % i, flush=True)\n    time.sleep(0.1)\n',
    );
    const dir = join(runs, 'blip');
    const run = npurun([
      'launch',
      '--hosts',
      hosts3,
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--console',
      'none',
      '--heartbeat-timeout',
      '60',
      '--run-dir',
      dir,
      '--',
      '/usr/bin/python3',
      counter,
    ]);
    await new Promise((r) => setTimeout(r, 4000));
    const h3 = c.hosts[2]!;
    await c.cutLink(h3);
    await new Promise((r) => setTimeout(r, 5000));
    await c.restoreLink(h3);
    const r = await run;
    expect(r.exitCode, r.all).toBe(0);
    const [folder] = runFolders(dir);
    for (let rank = 0; rank < 6; rank++) {
      const lines = readFileSync(join(folder as string, 'logs', `rank-${rank}.log`), 'utf8')
        .trimEnd()
        .split('\n');
      expect(lines).toEqual(Array.from({ length: 100 }, (_, i) => `tick ${String(i).padStart(3, '0')}`));
    }
  }, 120_000);

  it('--max-restarts with a host lost for a while: the restart waits for it (--host-wait), then the job finishes; both attempts recorded', async () => {
    const dir = join(runs, 'lost-host');
    const run = npurun([
      'launch',
      '--hosts',
      c.hostsFile(c.hosts.slice(0, 2)),
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--console',
      'none',
      '--run-dir',
      dir,
      '--max-restarts',
      '1',
      '--host-wait',
      '60',
      '--',
      'sh',
      '-c',
      'sleep 6; echo done',
    ]);
    await new Promise((r) => setTimeout(r, 2000));
    const h2 = c.hosts[1]!;
    await c.cutLink(h2);
    // Restored only after the launcher has lost h2 and started waiting for it.
    let said = '';
    run.all?.on('data', (b: Buffer) => (said += b.toString()));
    const deadline = Date.now() + 60_000;
    while (!/not every host is ready/.test(said) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    await c.restoreLink(h2);
    const r = await run;
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toMatch(/attempt 1 failed; restarting in 3 s/);
    expect(r.all).toMatch(/restart: not every host is ready \(try 1\)/);
    const [folder] = runFolders(dir);
    const record = JSON.parse(readFileSync(join(folder as string, 'run.json'), 'utf8')) as {
      status: string;
      attempts: { cause: string }[];
    };
    expect(record.status).toBe('succeeded');
    expect(record.attempts.map((a) => a.cause)).toEqual(['lost', 'succeeded']);
  }, 180_000);

  it('setsid and nohup daemons left by ranks on remote hosts neither block the end nor survive it', async () => {
    const r = await npurun([
      'launch',
      '--hosts',
      hosts3,
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--console',
      'none',
      '--run-dir',
      join(runs, 'daemons'),
      '--',
      'sh',
      '-c',
      'setsid sleep 300 & nohup sleep 301 & echo done',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    // afterEach: nothing left on any host.
  }, 120_000);

  it("a rank flooding its output beside a quiet one on the same host: the quiet rank's lines arrive within 1 s", async () => {
    const prog = script(
      'flood_or_tick.py',
      [
        'import os, sys, time',
        'if os.environ["LOCAL_RANK"] == "0":',
        '    b = b"x" * 4095 + b"\\n"',
        '    end = time.time() + 6',
        '    while time.time() < end: os.write(1, b)',
        'else:',
        '    for i in range(40):',
        '        print("tick %f" % time.time(), flush=True); time.sleep(0.1)',
        '',
      ].join('\n'),
    );
    const run = npurun([
      'launch',
      '--hosts',
      c.hostsFile([c.hosts[0]!]),
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--console',
      '1',
      '--run-dir',
      join(runs, 'flood'),
      '--',
      '/usr/bin/python3',
      prog,
    ]);
    const lags: number[] = [];
    let pending = '';
    run.all?.on('data', (b: Buffer) => {
      const lines = (pending + b.toString()).split('\n');
      pending = lines.pop() as string;
      for (const l of lines) {
        const m = /tick (\d+\.\d+)/.exec(l);
        if (m) lags.push(Date.now() / 1000 - Number(m[1]));
      }
    });
    const r = await run;
    expect(r.exitCode, r.all).toBe(0);
    expect(lags).toHaveLength(40);
    process.stdout.write(`quiet rank beside a flood: max lag ${Math.max(...lags).toFixed(3)} s\n`);
    expect(Math.max(...lags)).toBeLessThan(1);
  }, 120_000);
});

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, itWithTorch, startCluster, type Cluster } from './cluster/index.js';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
let PROBE = fileURLToPath(new URL('./programs/rank_probe.py', import.meta.url));
let ALLREDUCE = fileURLToPath(new URL('./programs/allreduce.py', import.meta.url));
const runs = mkdtempSync(join(tmpdir(), 'npurun-cluster-runs-'));

function npurun(args: string[]): ResultPromise<{ reject: false; all: true }> {
  return execa('node', [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: '1' } });
}

interface Probe {
  cpus: number[];
  env: Record<string, string>;
  argv: string[];
  cwd: string;
  table_entry_found?: boolean;
  server_id_is_mine?: boolean;
  device_ip_matches_hccn_conf?: boolean;
  device_id_matches?: boolean;
}

function probes(output: string): Probe[] {
  return output
    .split('\n')
    .map((l) => /PROBE (\{.*\})\s*$/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined)
    .map((j) => JSON.parse(j) as Probe);
}

describeCluster('npurun launch on the simulated cluster (real sshd)', () => {
  let c: Cluster;
  let hosts4: string;
  beforeAll(async () => {
    c = await startCluster(5, (i) => (i === 4 ? { wrongHostKey: true } : {}));
    hosts4 = c.hostsFile(c.hosts.slice(0, 4));
    PROBE = c.share(PROBE);
    ALLREDUCE = c.share(ALLREDUCE);
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    // No orphans: nothing but sshd left in any host, whatever the test did.
    expect(await c.waitForNoLeftovers(5000)).toEqual([]);
  });

  /** Hosts (of the 4 reachable ones) where `path` exists. */
  const marked = async (path: string) => {
    const found = await Promise.all(
      c.hosts.slice(0, 4).map(async (h) => ((await c.exec(h, ['test', '-e', path])).code === 0 ? [h.name] : [])),
    );
    return found.flat();
  };

  const base = (profile: string, extra: string[] = []) => [
    'launch',
    '--hosts',
    hosts4,
    '--profile',
    profile,
    '--nproc-per-node',
    '2',
    '--workdir',
    '/tmp/w',
    '--console',
    'all',
    '--run-dir',
    runs,
    ...extra,
    '--',
    '/usr/bin/python3',
    PROBE,
  ];

  it('mindspore: 4 hosts x 2 ranks, rank table copied to every host, each rank finds its own entry, pinned to its cores', async () => {
    const r = await npurun(base('mindspore', ['--bind-cores']));
    expect(r.exitCode, r.all).toBe(0);
    const ps = probes(r.stdout);
    expect(ps).toHaveLength(8);
    for (const p of ps) {
      expect(
        p.table_entry_found && p.server_id_is_mine && p.device_ip_matches_hccn_conf && p.device_id_matches,
        JSON.stringify(p),
      ).toBe(true);
      expect(p.env.RANK_SIZE).toBe('8');
      expect(p.env.MINDSPORE_HCCL_CONFIG_PATH).toBe(p.env.RANK_TABLE_FILE);
      expect(p.env.DEVICE_NUM).toBe('2');
      expect(p.env.SERVER_ID).toBe(p.env.NPURUN_NODE_RANK);
      expect(p.env.GLOO_SOCKET_IFNAME).toBe('eth0');
      expect(p.env.HCCL_IF_IP).toBe(`10.213.0.${11 + Number(p.env.NPURUN_NODE_RANK)}`);
      expect(p.cwd).toBe(`/tmp/w/train_parallel${p.env.RANK_ID}`);
      // --bind-cores: each local rank gets its own share of the host's CPUs.
      const cores = (await import('node:os')).cpus().length;
      expect(p.cpus).toHaveLength(Math.max(1, Math.floor(cores / 2)));
    }
    const byHost = new Map<string, number[][]>();
    for (const p of ps)
      byHost.set(p.env.NPURUN_HOST as string, [...(byHost.get(p.env.NPURUN_HOST as string) ?? []), p.cpus]);
    for (const sets of byHost.values()) expect(new Set(sets.flat()).size).toBe(sets.flat().length);
    expect(ps.map((p) => Number(p.env.RANK_ID)).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('tensorflow, torch and msrun profiles give the variables each framework reads', async () => {
    const tfRun = await npurun(base('tensorflow'));
    expect(tfRun.exitCode, tfRun.all).toBe(0);
    const tf = probes(tfRun.stdout);
    expect(tf).toHaveLength(8);
    for (const p of tf) {
      expect(p.table_entry_found && p.server_id_is_mine && p.device_ip_matches_hccn_conf).toBe(true);
      expect(p.env.ASCEND_DEVICE_ID).toBe(p.env.DEVICE_ID);
      expect(p.env.JOB_ID).toBe(p.env.NPURUN_RUN_ID);
    }
    const torchRun = await npurun(base('torch'));
    expect(torchRun.exitCode, torchRun.all).toBe(0);
    const torch = probes(torchRun.stdout);
    expect(
      torch
        .map((p) => [
          p.env.RANK,
          p.env.LOCAL_RANK,
          p.env.NODE_RANK,
          p.env.WORLD_SIZE,
          p.env.LOCAL_WORLD_SIZE,
          p.env.MASTER_ADDR,
        ])
        .sort(),
    ).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7]
        .map((r) => [String(r), String(r % 2), String(Math.floor(r / 2)), '8', '2', '10.213.0.11'])
        .sort(),
    );
    const msRun = await npurun(base('msrun'));
    expect(msRun.exitCode, msRun.all).toBe(0);
    const ms = probes(msRun.stdout);
    expect(ms).toHaveLength(9);
    const sched = ms.filter((p) => p.env.MS_ROLE === 'MS_SCHED');
    expect(sched).toHaveLength(1);
    expect(sched[0]!.env.NPURUN_HOST).toBe('h1');
    for (const p of ms) {
      expect(p.env.MS_SCHED_HOST).toBe('10.213.0.11');
      expect(p.env.MS_SCHED_PORT).toBe('8118');
      expect(p.env.MS_WORKER_NUM).toBe('8');
    }
  });

  for (const profile of ['mindspore', 'tensorflow', 'torch', 'msrun'] as const) {
    it(`${profile}: 1 host x 8 ranks on an unmodified sshd (MaxSessions 10): all start and exit 0`, async () => {
      const one = c.hostsFile([c.hosts[0]!]);
      const r = await npurun([
        'launch',
        '--hosts',
        one,
        '--profile',
        profile,
        '--workdir',
        '/tmp/w',
        '--console',
        'all',
        '--run-dir',
        runs,
        '--',
        '/usr/bin/python3',
        PROBE,
      ]);
      expect(r.exitCode, r.all).toBe(0);
      const ps = probes(r.stdout);
      // msrun adds its scheduler process (no device) beside the 8 workers.
      const workers = ps.filter((p) => p.env.MS_ROLE !== 'MS_SCHED');
      expect(ps).toHaveLength(profile === 'msrun' ? 9 : 8);
      expect(workers.map((p) => p.env.NPURUN_DEVICE_ID).sort()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
      if (profile === 'mindspore' || profile === 'tensorflow') {
        // Rank-table profiles: each rank finds its own entry, with its device's address.
        expect(workers.map((p) => p.env.DEVICE_ID).sort()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
        expect(workers.every((p) => p.table_entry_found && p.device_ip_matches_hccn_conf)).toBe(true);
      } else {
        // torch and msrun: local rank i sees the host's chosen devices, and uses the i-th.
        expect(workers.map((p) => p.env.ASCEND_RT_VISIBLE_DEVICES)).toEqual(Array(8).fill('0,1,2,3,4,5,6,7'));
        expect(workers.map((p) => p.env[profile === 'torch' ? 'LOCAL_RANK' : 'DEVICE_ID']).sort()).toEqual([
          '0',
          '1',
          '2',
          '3',
          '4',
          '5',
          '6',
          '7',
        ]);
      }
    });
  }

  itWithTorch(
    'a real PyTorch job (gloo) all_reduces across 4 hosts',
    async () => {
      const r = await npurun([
        'launch',
        '--hosts',
        hosts4,
        '--profile',
        'torch',
        '--nproc-per-node',
        '1',
        '--workdir',
        '/tmp/w',
        '--console',
        'all',
        '--run-dir',
        runs,
        '--',
        '/usr/bin/python3',
        ALLREDUCE,
      ]);
      expect(r.exitCode, r.all).toBe(0);
      const sums = [...r.stdout.matchAll(/ALLREDUCE rank=(\d) world=4 sum=(\d+) host=(h\d)/g)].map((m) => [
        m[1],
        m[2],
        m[3],
      ]);
      expect(sums.sort()).toEqual([
        ['0', '10', 'h1'],
        ['1', '10', 'h2'],
        ['2', '10', 'h3'],
        ['3', '10', 'h4'],
      ]);
    },
    120_000,
  );

  it('a rank that exits 7 makes npurun exit 7 within 2 s of it, naming that rank, and stops all others', async () => {
    const script =
      'import os,time,sys\nif os.environ["RANK"]=="5":\n    time.sleep(1.5); print("rank 5 gives up", flush=True); open("/tmp/exit-at","w").write(repr(time.time())); sys.exit(7)\ntime.sleep(60)\n';
    const r = await npurun([
      'launch',
      '--hosts',
      hosts4,
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--workdir',
      '/tmp/w',
      '--console',
      'none',
      '--run-dir',
      runs,
      '--',
      '/usr/bin/python3',
      '-c',
      script,
    ]);
    const harnessEnd = Date.now() / 1000;
    expect(r.exitCode, r.all).toBe(7);
    const exitAt = Number((await c.exec(c.hosts[2]!, ['cat', '/tmp/exit-at'])).stdout);
    // To the stop npurun recorded (run.json ended_at), not to execa's view of node's exit on 2 busy cores.
    const endedAt =
      Date.parse(
        (
          JSON.parse(
            readFileSync(
              join(runs, (r.stderr.match(/run (\S+):/) as RegExpMatchArray)[1] as string, 'run.json'),
              'utf8',
            ),
          ) as { ended_at: string }
        ).ended_at,
      ) / 1000;
    process.stdout.write(
      `fail-fast: run recorded ended ${(endedAt - exitAt).toFixed(2)} s after rank 5's exit (harness: ${(harnessEnd - exitAt).toFixed(2)} s)\n`,
    );
    expect(endedAt - exitAt).toBeLessThan(2);
    expect(r.stderr).toMatch(/rank 5 \(host h3, device 1\) exited with code 7/);
    expect(r.stderr).toContain('rank 5 gives up');
    expect(r.stderr).toMatch(/stopped the other 7 ranks/);
    const run = JSON.parse(
      readFileSync(join(runs, (r.stderr.match(/run (\S+):/) as RegExpMatchArray)[1] as string, 'run.json'), 'utf8'),
    ) as { root_cause: string; exit_code: number; ranks: { label: string; exit: { cause: string } }[] };
    expect(run.root_cause).toBe('5');
    expect(run.exit_code).toBe(7);
    expect(run.ranks.filter((x) => x.label !== '5').every((x) => x.exit.cause === 'stopped')).toBe(true);
  });

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGKILL'] as const) {
    it(`${sig} to npurun leaves no process on any host within 5 s`, async () => {
      const p = npurun([
        'launch',
        '--hosts',
        hosts4,
        '--profile',
        'torch',
        '--nproc-per-node',
        '2',
        '--workdir',
        '/tmp/w',
        '--console',
        'all',
        '--run-dir',
        runs,
        '--',
        'sh',
        '-c',
        'echo started; sleep 120 & sleep 120',
      ]);
      let seen = 0;
      p.stdout?.on('data', (d: Buffer) => (seen += (d.toString().match(/started/g) ?? []).length));
      while (seen < 8) await new Promise((res) => setTimeout(res, 50));
      expect((await c.leftovers()).length).toBeGreaterThanOrEqual(16);
      p.kill(sig);
      const r = await p;
      if (sig !== 'SIGKILL') {
        expect(r.exitCode).toBe(sig === 'SIGINT' ? 130 : 143);
        expect(r.stderr).toMatch(new RegExp(`stopped by ${sig}`));
      }
      expect(await c.waitForNoLeftovers(5000)).toEqual([]);
    });
  }

  it("a host's link cut mid-run: its ranks stop by themselves, the others are stopped, exit 3", async () => {
    const p = npurun([
      'launch',
      '--hosts',
      hosts4,
      '--profile',
      'torch',
      '--nproc-per-node',
      '2',
      '--workdir',
      '/tmp/w',
      '--console',
      'all',
      '--run-dir',
      runs,
      '--',
      'sh',
      '-c',
      'echo started; sleep 120',
    ]);
    let seen = 0;
    p.stdout?.on('data', (d: Buffer) => (seen += (d.toString().match(/started/g) ?? []).length));
    while (seen < 8) await new Promise((res) => setTimeout(res, 50));
    await c.cutLink(c.hosts[1]!);
    try {
      // Ranks on the cut host are stopped by their guards (no heartbeat); sshd's own session
      // processes are not counted: they are the daemon's, and go when TCP gives up.
      expect(await c.waitForNoLeftovers(5000, { exceptSshdSessions: true })).toEqual([]);
      const r = await p;
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toMatch(/host h2 lost|rank [23] \(host h2.*lost/);
    } finally {
      await c.restoreLink(c.hosts[1]!);
    }
  }, 30_000);

  it('hostile env values and arguments arrive byte for byte and run nothing', async () => {
    const hostile = `a'b"c $(touch /tmp/pwned) \`touch /tmp/pwned2\` ; | & > < * ? \\ \n second line $HOME ümlaut 日本`;
    const r = await npurun([
      'launch',
      '--hosts',
      hosts4,
      '--profile',
      'torch',
      '--nproc-per-node',
      '1',
      '--workdir',
      '/tmp/w',
      '--console',
      'all',
      '--run-dir',
      runs,
      '--env',
      `HOSTILE=${hostile}`,
      '--env',
      'EMPTY=',
      '--',
      '/usr/bin/python3',
      PROBE,
      hostile,
      '',
      '--flag=$(id)',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    const ps = probes(r.stdout);
    expect(ps).toHaveLength(4);
    for (const p of ps) {
      expect(p.env.HOSTILE).toBe(hostile);
      expect(p.env.EMPTY).toBe('');
      expect(p.argv).toEqual([hostile, '', '--flag=$(id)']);
    }
    for (const h of c.hosts.slice(0, 4))
      expect((await c.exec(h, ['sh', '-c', 'ls /tmp/pwned /tmp/pwned2 2>/dev/null | wc -l'])).stdout.trim()).toBe('0');
  });

  it('preflight failures (unreachable host, wrong host key) exit 3 naming each host, and start nothing anywhere', async () => {
    const bad = c.hostsFile([c.hosts[0]!, c.hosts[4]!], '  - { name: ghost, address: 10.213.0.99 }\n');
    const r = await npurun([
      'launch',
      '--hosts',
      bad,
      '--profile',
      'torch',
      '--nproc-per-node',
      '1',
      '--run-dir',
      runs,
      '--',
      'sh',
      '-c',
      'touch /tmp/started-mark; sleep 30',
    ]);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/preflight failed on 2 of 3 hosts; nothing was started/);
    expect(await marked('/tmp/started-mark')).toEqual([]);
    expect(r.stderr).toMatch(/h5 \(10\.213\.0\.15\): .*host key does not match/);
    expect(r.stderr).toMatch(/ghost \(10\.213\.0\.99\): /);
    expect(await c.leftovers()).toEqual([]);
  }, 30_000);

  it('a script missing on a host fails preflight (exit 3) before anything starts', async () => {
    // The script exists on h2..h4 (their private /tmp) and would leave a mark there if it ran.
    for (const h of c.hosts.slice(1, 4)) {
      expect(
        (await c.exec(h, ['sh', '-c', "echo \"open('/tmp/started-mark', 'w').close()\" > /tmp/only-here.py"])).code,
      ).toBe(0);
    }
    const r = await npurun([
      'launch',
      '--hosts',
      hosts4,
      '--profile',
      'torch',
      '--nproc-per-node',
      '1',
      '--run-dir',
      runs,
      '--',
      '/usr/bin/python3',
      '/tmp/only-here.py',
    ]);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/h1 \(10\.213\.0\.11\): script \/tmp\/only-here\.py not found on this host/);
    expect(await marked('/tmp/started-mark')).toEqual([]);
    // Had it run, the mark would be there: run it by hand on h2.
    expect((await c.exec(c.hosts[1]!, ['/usr/bin/python3', '/tmp/only-here.py'])).code).toBe(0);
    expect(await marked('/tmp/started-mark')).toEqual(['h2']);
    for (const h of c.hosts.slice(1, 4))
      expect((await c.exec(h, ['rm', '-f', '/tmp/only-here.py', '/tmp/started-mark'])).code).toBe(0);
    const prog = await npurun([
      'launch',
      '--hosts',
      hosts4,
      '--profile',
      'torch',
      '--nproc-per-node',
      '1',
      '--run-dir',
      runs,
      '--',
      'no-such-trainer',
      '--epochs',
      '1',
    ]);
    expect(prog.exitCode).toBe(3);
    expect(prog.stderr).toMatch(/preflight failed on 4 of 4 hosts/);
    expect(prog.stderr).toMatch(/h3 \(10\.213\.0\.13\): program "no-such-trainer" not found/);
  });

  it('a bad inventory exits 2 naming the file and field, and starts nothing', async () => {
    const bad = c.hostsFile([c.hosts[0]!], '  - { name: h9, adress: 10.213.0.12 }\n');
    const r = await npurun(['launch', '--hosts', bad, '--run-dir', runs, '--', 'sleep', '30']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(bad);
    expect(r.stderr).toMatch(/hosts\[1\]/);
    expect(r.stderr).toMatch(/adress/);
    expect(await c.leftovers()).toEqual([]);
  });
});

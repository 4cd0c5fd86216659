import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, itWithTorch, startCluster, type Cluster } from './cluster/index.js';
import { describeSlurm, startSlurm, type Slurm } from './cluster/slurm.js';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
let PROBE = fileURLToPath(new URL('./programs/rank_probe.py', import.meta.url));
let ALLREDUCE = fileURLToPath(new URL('./programs/allreduce.py', import.meta.url));

interface Probe {
  env: Record<string, string>;
  argv: string[];
  table_entry_found?: boolean;
  server_id_is_mine?: boolean;
  device_ip_matches_hccn_conf?: boolean;
  device_id_matches?: boolean;
}

function probes(text: string): Probe[] {
  return text
    .split('\n')
    .map((l) => /PROBE (\{.*\})\s*$/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined)
    .map((j) => JSON.parse(j) as Probe);
}

interface RunJson {
  run_id: string;
  status: string;
  exit_code: number;
  root_cause: string | null;
  ranks: { label: string; host: string; exit: { code: number | null; ended_at: string } | null }[];
  inventory: { name: string; address: string; slurm?: { jobId: string; node: string } }[];
}

function onlyRun(runsDir: string): { dir: string; record: RunJson } {
  const ids = readdirSync(runsDir).filter((d) => !d.startsWith('.') && !/\.(out|yaml|sh)$/.test(d));
  expect(ids).toHaveLength(1);
  const dir = join(runsDir, ids[0] as string);
  return { dir, record: JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunJson };
}

describeSlurm('npurun launch inside a Slurm allocation (real slurmctld, one slurmd per host, agents by srun)', () => {
  let c: Cluster;
  let s: Slurm;
  let runs: string;
  beforeAll(async () => {
    c = await startCluster(3, (i) => (i === 2 ? { devices: 8 } : {}));
    s = await startSlurm(c);
    PROBE = c.share(PROBE);
    ALLREDUCE = c.share(ALLREDUCE);
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => {
    await s?.stop();
    await c?.stop();
  });
  afterEach(async () => {
    expect(await s.waitForNoLeftovers(10_000)).toEqual([]);
    expect(await s.waitForNoJobs()).toEqual([]);
  });
  const newRuns = () => (runs = mkdtempSync(join(tmpdir(), 'npurun-slurm-runs-')));

  /** `salloc ARGS node bin/npurun launch LAUNCH`: npurun as the allocation's command. */
  const inAllocation = (salloc: string[], launch: string[]) =>
    execa('salloc', [...salloc, 'node', BIN, 'launch', ...launch], { env: s.env, reject: false, all: true });

  it('2 nodes x 8 ranks through srun: hosts from the allocation in its order, env byte for byte, rank table on every node, no SSH', async () => {
    newRuns();
    const hostile = `a'b"c $(touch /tmp/pwned) \`x\` ; | & \n second line ümlaut 日本`;
    const r = await inAllocation(
      ['-N2', '-w', 'h1,h2', '--gres=gpu:8'],
      [
        '--profile',
        'mindspore',
        '--console',
        'all',
        '--runs-dir',
        runs,
        '--workdir',
        '/tmp/w',
        '--env',
        `HOSTILE=${hostile}`,
        '--',
        '/usr/bin/python3',
        PROBE,
        hostile,
      ],
    );
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toMatch(
      /npurun: engine slurm \(SLURM_JOB_ID=\d+ is set and no --hosts was given\): job \d+, 2 nodes h1, h2/,
    );
    const { dir, record } = onlyRun(runs);
    expect(record.inventory.map((h) => [h.name, h.address, h.slurm?.node])).toEqual([
      ['h1', '10.213.0.11', 'h1'],
      ['h2', '10.213.0.12', 'h2'],
    ]);
    const ps = probes(readFileSync(join(dir, 'merged.log'), 'utf8'));
    expect(ps).toHaveLength(16);
    for (const p of ps) {
      expect(p.env.HOSTILE).toBe(hostile);
      expect(p.argv).toEqual([hostile]);
      expect(p.table_entry_found && p.server_id_is_mine && p.device_ip_matches_hccn_conf && p.device_id_matches).toBe(
        true,
      );
      expect(p.env.RANK_SIZE).toBe('16');
      // The agent's one-task step must not tell every rank it is task 0 of 1.
      expect(p.env.SLURM_PROCID).toBeUndefined();
      expect(p.env.SLURM_NTASKS).toBeUndefined();
      expect(p.env.SLURM_JOB_ID).toBeDefined();
    }
    expect(ps.map((p) => Number(p.env.RANK_ID)).sort((a, b) => a - b)).toEqual([...Array(16).keys()]);
    // Node rank in allocation order: ranks 0-7 on h1, 8-15 on h2.
    for (const p of ps) expect(p.env.SERVER_ID ?? '').toBe(Number(p.env.RANK_ID) < 8 ? '0' : '1');
    // No SSH login on any host.
    for (const h of c.hosts) expect(await c.logins(h)).toEqual([]);
  }, 120_000);

  it("a rank exiting 7: npurun exits 7 (not srun's 143) naming rank, node and device, and nothing is left", async () => {
    newRuns();
    const started = Date.now();
    const r = await inAllocation(
      ['-N2', '--gres=gpu:8'],
      [
        '--runs-dir',
        runs,
        '--console',
        'none',
        '--',
        'sh',
        '-c',
        'if [ "$RANK_ID" = 11 ]; then sleep 1; exit 7; fi; exec sleep 60',
      ],
    );
    expect(r.exitCode, r.all).toBe(7);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.all).toMatch(/rank 11 .*h2.*dev(ice)? ?3|rank 11[^\n]*h2[^\n]*3/);
    const { record } = onlyRun(runs);
    expect(record.exit_code).toBe(7);
    expect(record.root_cause).toBe('11');
    // From the failing rank's exit to the last rank stopped on either node, as npurun recorded them.
    const ended = (label: string) => Date.parse(record.ranks.find((k) => k.label === label)?.exit?.ended_at ?? '');
    const stopped = Math.max(...record.ranks.map((k) => ended(k.label))) - ended('11');
    process.stderr.write(`slurm: rank 11 exit -> every rank stopped: ${stopped} ms\n`);
    expect(stopped).toBeLessThan(1000);
  }, 60_000);

  it('SIGKILL of npurun and scancel of the job each leave no rank on any node', async () => {
    for (const how of ['SIGKILL', 'scancel'] as const) {
      newRuns();
      const child = inAllocation(
        ['-N2', '--gres=gpu:8', '-J', `npurun-${how}`],
        ['--runs-dir', runs, '--console', 'none', '--', 'sleep', '300'],
      );
      // Wait until every rank runs (16 sleeps on the nodes).
      const end = Date.now() + 30_000;
      while ((await s.leftovers()).filter((l) => l.cmdline === 'sleep 300').length < 16 && Date.now() < end)
        await new Promise((res) => setTimeout(res, 200));
      expect((await s.leftovers()).filter((l) => l.cmdline === 'sleep 300')).toHaveLength(16);
      if (how === 'SIGKILL') {
        const npurun = await execa('pgrep', ['-f', `^node ${BIN} launch --runs-dir ${runs}`]);
        for (const pid of npurun.stdout.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
      } else {
        await execa('scancel', ['-n', `npurun-${how}`], { env: s.env });
      }
      await child;
      expect(await s.waitForNoLeftovers(15_000)).toEqual([]);
    }
  }, 120_000);

  it('a node cut off mid-run: npurun names it lost within the heartbeat timeout and ends; nothing is left once it is back', async () => {
    newRuns();
    const child = inAllocation(
      ['-N2', '-w', 'h1,h2', '--gres=gpu:8'],
      ['--runs-dir', runs, '--console', 'none', '--heartbeat-timeout', '3', '--', 'sleep', '300'],
    );
    const end = Date.now() + 30_000;
    while ((await s.leftovers()).filter((l) => l.cmdline === 'sleep 300').length < 16 && Date.now() < end)
      await new Promise((res) => setTimeout(res, 200));
    const h2 = c.hosts[1] as (typeof c.hosts)[number];
    const cut = Date.now();
    await c.cutLink(h2);
    const r = await child;
    const took = Date.now() - cut;
    await c.restoreLink(h2);
    process.stderr.write(`slurm: h2 cut -> npurun ended: ${took} ms (exit ${r.exitCode})\n`);
    expect(r.all).toMatch(/host h2 lost: .*no answer from its agent through srun for 3 s/);
    expect(r.exitCode).not.toBe(0);
    expect(took).toBeLessThan(15_000);
    expect(await s.waitForNoLeftovers(20_000)).toEqual([]);
    expect(await s.waitForNoJobs(60_000)).toEqual([]);
  }, 120_000);

  it('two concurrent 4-device jobs on one node get disjoint devices and rank tables that say so', async () => {
    newRuns();
    const one = () =>
      inAllocation(['-N1', '-w', 'h3', '--gres=gpu:4'], ['--runs-dir', runs, '--console', 'none', '--', 'sleep', '3']);
    const [a, b] = await Promise.all([one(), one()]);
    expect(a.exitCode, a.all).toBe(0);
    expect(b.exitCode, b.all).toBe(0);
    const tables = readdirSync(runs)
      .filter((d) => !d.startsWith('.'))
      .map(
        (d) =>
          JSON.parse(readFileSync(join(runs, d, 'rank_table.json'), 'utf8')) as {
            server_list: { device: { device_id: string }[] }[];
          },
      );
    expect(tables).toHaveLength(2);
    const devices = tables.map((t) => t.server_list.flatMap((sv) => sv.device.map((d) => Number(d.device_id))).sort());
    expect(devices.map((d) => d.length)).toEqual([4, 4]);
    expect(new Set([...(devices[0] as number[]), ...(devices[1] as number[])]).size).toBe(8);
  }, 120_000);

  itWithTorch(
    'torch profile: a real gloo all_reduce across 2 nodes x 8 ranks started by srun',
    async () => {
      newRuns();
      const r = await inAllocation(
        ['-N2', '--gres=gpu:8'],
        ['--profile', 'torch', '--runs-dir', runs, '--console', 'rank0', '--', '/usr/bin/python3', ALLREDUCE],
      );
      expect(r.exitCode, r.all).toBe(0);
      const { dir } = onlyRun(runs);
      const sums = readFileSync(join(dir, 'merged.log'), 'utf8').match(
        /ALLREDUCE rank=\d+ world=16 sum=136 host=h[12]/g,
      );
      expect(sums).toHaveLength(16);
    },
    180_000,
  );

  it('npurun submit: the batch job runs npurun launch to COMPLETED, its output and run folder in the runs folder; runs shows the job id', async () => {
    runs = mkdtempSync(join(c.dir, 'runs-'));
    const job = join(runs, 'job.yaml');
    writeFileSync(job, `profile: torch\ncommand: [/bin/sh, -c, 'echo rank $RANK of $WORLD_SIZE']\n`);
    const sub = await execa(
      'node',
      [BIN, 'submit', '--job', job, '--nodes', '2', '--gres', 'gpu:910b:8', '--runs-dir', runs],
      {
        env: s.env,
        reject: false,
      },
    );
    expect(sub.exitCode, sub.stderr).toBe(0);
    const jobId = sub.stdout.trim();
    expect(jobId).toMatch(/^\d+$/);
    expect(sub.stderr).toContain(`submitted Slurm job ${jobId}`);
    let state = '';
    const end = Date.now() + 60_000;
    while (!/JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT)/.test(state) && Date.now() < end) {
      await new Promise((res) => setTimeout(res, 300));
      state = (await execa('scontrol', ['show', 'job', jobId], { env: s.env, reject: false })).stdout;
    }
    expect(state).toMatch(/JobState=COMPLETED .*ExitCode=0:0/s);
    expect(readFileSync(join(runs, `slurm-${jobId}.out`), 'utf8')).toMatch(/all 16 ranks succeeded/);
    const { dir, record } = onlyRun(runs);
    expect(record.inventory.map((h) => h.slurm?.jobId)).toEqual([jobId, jobId]);
    expect(readFileSync(join(dir, 'merged.log'), 'utf8').match(/rank \d+ of 16/g)).toHaveLength(16);
    const listed = await execa('node', [BIN, 'runs', '--runs-dir', runs], { env: s.env });
    expect(listed.stdout.split('\n')[0]).toMatch(/EXIT +SLURM JOB +ROOT CAUSE/);
    expect(listed.stdout.split('\n')[1]).toMatch(new RegExp(`(succeeded|ok) +0 +${jobId} +-$`));
  }, 120_000);

  it('sbatch of npurun launch runs to COMPLETED with its output in the runs folder', async () => {
    // The batch script runs on the first node, whose /tmp is its own: the runs folder is on shared storage.
    runs = mkdtempSync(join(c.dir, 'runs-'));
    const script = join(runs, 'job.sh');
    writeFileSync(script, `#!/bin/sh\nexec node ${BIN} launch --runs-dir ${runs} --console none -- /bin/true\n`);
    const sub = await execa(
      'sbatch',
      ['--parsable', '-N2', '--gres=gpu:8', `--output=${runs}/slurm-%j.out`, '--wait', script],
      {
        env: s.env,
        reject: false,
      },
    );
    expect(sub.exitCode, sub.stderr).toBe(0);
    const jobId = sub.stdout.trim().split(';')[0] as string;
    expect(readFileSync(join(runs, `slurm-${jobId}.out`), 'utf8')).toMatch(/all 16 ranks succeeded/);
  }, 120_000);
});

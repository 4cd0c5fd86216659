import { createReadStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, itWithTorch, startCluster, type Cluster } from './cluster/index.js';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
let c: Cluster;
const program = (name: string) => c.share(fileURLToPath(new URL(`./programs/${name}`, import.meta.url)));
const runs = mkdtempSync(join(tmpdir(), 'npurun-run-cluster-'));

const npurun = (args: string[]) => execa('node', [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: '1' } });
const runIdOf = (stderr: string) => (/run (\S+): \d+ process/.exec(stderr) as RegExpExecArray)[1] as string;

async function countLines(file: string, each?: (line: string) => void): Promise<number> {
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    n++;
    each?.(line);
  }
  return n;
}

describeCluster('run folders, checkpoints and summaries on the simulated cluster', () => {
  let hosts: string;
  beforeAll(async () => {
    c = await startCluster(4);
    hosts = c.hostsFile();
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    expect(await c.waitForNoLeftovers(5000)).toEqual([]);
  });

  it('8 ranks x 100k lines over SSH arrive complete and whole in per-rank logs and the merged log', async () => {
    const n = 100_000;
    const r = await npurun([
      'launch',
      '--hosts',
      hosts,
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
      program('lines.py'),
      String(n),
    ]);
    expect(r.exitCode, r.all).toBe(0);
    const dir = join(runs, runIdOf(r.stderr));
    const perRankSeen = new Map<string, number>();
    const mergedCount = await countLines(join(dir, 'merged.log'), (line) => {
      const m = /\[(\d) h\d dev\d\] rank (\d) line (\d+) (payload x*|last-no-newline)$/.exec(line);
      if (!m || m[1] !== m[2]) throw new Error(`torn or foreign line in merged.log: ${line.slice(0, 200)}`);
      const expected = perRankSeen.get(m[1] as string) ?? 0;
      if (Number(m[3]) !== expected) throw new Error(`rank ${m[1]}: line ${m[3]} where ${expected} was expected`);
      perRankSeen.set(m[1] as string, expected + 1);
    });
    expect(mergedCount).toBe(8 * n);
    expect([...perRankSeen.values()]).toEqual(Array(8).fill(n));
    for (let rank = 0; rank < 8; rank++) {
      let i = 0;
      const count = await countLines(join(dir, 'logs', `rank-${rank}.log`), (line) => {
        const payload = i === n - 1 ? 'last-no-newline' : `payload ${'x'.repeat(i % 50)}`;
        if (line !== `rank ${rank} line ${i} ${payload}`)
          throw new Error(`rank ${rank} line ${i}: ${line.slice(0, 120)}`);
        i++;
      });
      expect(count).toBe(n);
    }
    // The folder is readable later: `logs` filters it, `runs` lists it.
    const tail = await npurun(['logs', '--run-dir', runs, '--rank', '3', '--tail', '1', '--raw']);
    expect(tail.stdout.trim()).toBe(`rank 3 line ${n - 1} last-no-newline`);
  }, 120_000);

  it('checkpoints: cadence and keep-max enforced over SFTP; a crash mid-save never counts; latest and --resume pick the last complete step', async () => {
    const job = join(runs, 'ckpt-job.yaml');
    writeFileSync(
      job,
      [
        'name: ckpt',
        'profile: torch',
        'nproc_per_node: 1',
        'workdir: /tmp/w',
        'rank_dir: r{rank}',
        `command: [/usr/bin/python3, ${program('ckpt_job.py')}, --epochs, "8", --slow_rank, "1", --fail_rank, "2", --fail_epoch, "6"]`,
        'checkpoint: { interval: 2, keep_max: 2, dir: ckpt }',
        'resume_arg: "--resume_from={path}"',
      ].join('\n'),
    );
    const r = await npurun(['launch', '--hosts', hosts, '--job', job, '--console', 'none', '--run-dir', runs]);
    // Rank 2 crashed while writing epoch 6: the run fails with its code, and epoch 4 is the newest
    // step every saving rank completed.
    expect(r.exitCode, r.all).toBe(1);
    const runId = runIdOf(r.stderr);
    expect(r.stderr).toMatch(/rank 2 \(host h3, device 0\) exited with code 1/);
    expect(r.stderr).toMatch(/latest checkpoint every saving rank completed: epoch 4, step 400/);
    const latest = await npurun(['ckpt', 'latest', runId, '--run-dir', runs, '--json']);
    expect(latest.exitCode, latest.all).toBe(0);
    expect(JSON.parse(latest.stdout).latest).toMatchObject({
      epoch: 4,
      step: 400,
      files: { '0': '0-4_400.ckpt', '2': '2-4_400.ckpt' },
    });
    // keep-max 2 on every host: rank 2 keeps epochs 2 and 4 complete plus its partial epoch 6.
    const h3 = await c.exec(c.hosts[2]!, ['sh', '-c', 'ls /tmp/w/r2/ckpt; stat -c %s /tmp/w/r2/ckpt/2-6_600.ckpt']);
    expect(h3.stdout.split('\n')).toEqual(['2-2_200.ckpt', '2-4_400.ckpt', '2-6_600.ckpt', '4096']);
    const list = await npurun(['ckpt', 'list', runId, '--run-dir', runs]);
    expect(list.stdout).toMatch(/step +600 +4096 B +PARTIAL +2-6_600\.ckpt/);
    // Resume: every rank gets its own file of epoch 4, also through the job's resume_arg.
    const again = await npurun([
      'launch',
      '--hosts',
      hosts,
      '--job',
      job,
      '--console',
      'all',
      '--run-dir',
      runs,
      '--resume',
      runId,
      '--',
      '/usr/bin/python3',
      '-c',
      'import os,sys; print("RESUME", os.environ["NPURUN_RESUME_CKPT"], os.environ["NPURUN_RESUME_STEP"], sys.argv[1:])',
      'x',
    ]);
    expect(again.exitCode, again.all).toBe(0);
    const resumed = [...again.stdout.matchAll(/RESUME (\S+) (\d+) \['x', '--resume_from=(\S+)'\]/g)].map((m) => [
      m[1],
      m[2],
      m[3],
    ]);
    expect(resumed.sort()).toEqual(
      [0, 1, 2, 3].map((rank) => [
        `/tmp/w/r${rank}/ckpt/${rank}-4_400.ckpt`,
        '400',
        `/tmp/w/r${rank}/ckpt/${rank}-4_400.ckpt`,
      ]),
    );
  }, 90_000);

  it("checkpoints over the host agents: a second run in the same folders never prunes, counts or offers the first run's files or a pretrained model", async () => {
    const jobFile = (name: string, stepPerEpoch: number, keepMax: number) => {
      const file = join(runs, `${name}.yaml`);
      writeFileSync(
        file,
        [
          `name: ${name}`,
          'profile: torch',
          'nproc_per_node: 1',
          'workdir: /tmp/w2',
          'rank_dir: r{rank}',
          `command: [/usr/bin/python3, ${program('ckpt_job.py')}, --epochs, "5", --step_per_epoch, "${stepPerEpoch}", --epoch_time, "0.2"]`,
          `checkpoint: { interval: 1, keep_max: ${keepMax}, dir: ckpt }`,
        ].join('\n'),
      );
      return file;
    };
    const a = await npurun([
      'launch',
      '--hosts',
      hosts,
      '--job',
      jobFile('own-a', 40, 10),
      '--console',
      'none',
      '--run-dir',
      runs,
    ]);
    expect(a.exitCode, a.all).toBe(0);
    await Promise.all(
      c.hosts.map((h, r) =>
        c.exec(h, ['sh', '-c', `head -c 20000 /dev/zero > /tmp/w2/r${r}/ckpt/pretrained-1_1.ckpt`]),
      ),
    );
    const b = await npurun([
      'launch',
      '--hosts',
      hosts,
      '--job',
      jobFile('own-b', 20, 3),
      '--console',
      'none',
      '--run-dir',
      runs,
    ]);
    expect(b.exitCode, b.all).toBe(0);
    expect(b.stderr).toMatch(/latest checkpoint every saving rank completed: epoch 5, step 100/);
    const left = await c.exec(c.hosts[3]!, ['sh', '-c', 'ls /tmp/w2/r3/ckpt']);
    expect(left.stdout.split('\n').sort()).toEqual([
      '3-1_40.ckpt',
      '3-2_80.ckpt',
      '3-3_120.ckpt',
      '3-3_60.ckpt',
      '3-4_160.ckpt',
      '3-4_80.ckpt',
      '3-5_100.ckpt',
      '3-5_200.ckpt',
      'pretrained-1_1.ckpt',
    ]);
    const latest = await npurun(['ckpt', 'latest', runIdOf(b.stderr), '--run-dir', runs, '--json']);
    expect(JSON.parse(latest.stdout).latest).toMatchObject({
      step: 100,
      files: { '0': '0-5_100.ckpt', '3': '3-5_100.ckpt' },
    });
  }, 90_000);

  itWithTorch(
    'summary reduces a real PyTorch (gloo) sharded evaluation across hosts to the totals the job printed',
    async () => {
      const r = await npurun([
        'launch',
        '--hosts',
        hosts,
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
        program('eval_job.py'),
      ]);
      expect(r.exitCode, r.all).toBe(0);
      const [t1, t5, total] = (/TOTALS (\d+) (\d+) (\d+)/.exec(r.stdout) as RegExpExecArray).slice(1).map(Number);
      expect(total).toBe(1003);
      const s = await npurun(['summary', runIdOf(r.stderr), '--run-dir', runs, '--json']);
      expect(s.exitCode, s.all).toBe(0);
      const summary = JSON.parse(s.stdout) as {
        eval: { top1Correct: number; top5Correct: number; total: number };
        allreduce: unknown;
        problems: string[];
        metrics: Record<string, { value: number }>;
      };
      expect(summary.eval).toMatchObject({ top1Correct: t1, top5Correct: t5, total: 1003 });
      expect(summary.allreduce).toEqual({ top1: { correct: t1, total: 1003 }, top5: { correct: t5, total: 1003 } });
      expect(summary.problems).toEqual([]);
      expect(summary.metrics.samples_seen?.value).toBe(1003);
      expect(r.stderr).toMatch(/agrees on every rank and with the per-rank sums/);
      expect(JSON.parse(readFileSync(join(runs, runIdOf(r.stderr), 'summary.json'), 'utf8')).eval.total).toBe(1003);
    },
    90_000,
  );
});

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, startCluster, type Cluster, type SimHost } from './cluster/index.js';

// A host lost mid-run on the test cluster (its link cut: sshd unreachable, its ranks stopped by their
// guards), with --max-restarts 1: the restart runs on a spare (same world size), on the hosts left
// (fewer ranks), or fails naming the host after --host-wait.

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
const runs = mkdtempSync(join(tmpdir(), 'npurun-host-loss-'));

function npurun(args: string[]): ResultPromise<{ reject: false; all: true }> {
  return execa('node', [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: '1' } });
}

interface Attempt {
  attempt: number;
  cause: string;
  exit_code: number;
  world_size?: number;
  replaced?: { host: string; by: string }[];
  dropped?: string[];
  resumed_from: { epoch: number; files: Record<string, string> } | null;
}
interface RunJson {
  status: string;
  exit_code: number;
  world_size: number;
  inventory: { name: string }[];
  ranks: { label: string; host: string }[];
  attempts: Attempt[];
}

/** `RANK r WORLD n HOST h TABLE t RESUME p` lines of a rank log, one per attempt. */
function rankStarts(folder: string, label: string) {
  return readFileSync(join(folder, 'logs', `rank-${label}.log`), 'utf8')
    .split('\n')
    .map((l) => /RANK (\d+) WORLD (\d+) HOST (\S+) TABLE (\S+) RESUME (\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ world: Number(m[2]), host: m[3], table: m[4], resume: m[5] }));
}

describeCluster('lost hosts at a restart (--on-host-loss)', () => {
  let c: Cluster;
  let program: string;
  let shared: string;
  beforeAll(async () => {
    c = await startCluster(3);
    program = c.share(fileURLToPath(new URL('./programs/host_loss_job.py', import.meta.url)));
    // Checkpoints on storage every host sees (the cluster dir), as a spare must read the lost host's.
    shared = dirname(program);
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    expect(await c.waitForNoLeftovers(8000, { exceptSshdSessions: true })).toEqual([]);
  });

  /** Launches `name` on `hosts` (+ `extra` in the hosts file), cuts h2 once every rank printed epoch 10 (the watcher, listing every 2 s, has seen complete saves by then). */
  async function lose(
    name: string,
    hosts: SimHost[],
    extraHosts: string,
    jobExtra: string,
    flags: string[],
    work = join(shared, `work-${name}`),
  ) {
    if (work.startsWith(shared)) mkdirSync(work, { recursive: true });
    const job = join(mkdtempSync(join(tmpdir(), 'npurun-host-loss-job-')), 'job.yaml');
    writeFileSync(
      job,
      [
        'profile: mindspore',
        `command: [/usr/bin/python3, ${program}, --epochs, "16", --epoch_time, "0.6"]`,
        `workdir: ${work}`,
        'nproc_per_node: 2',
        'restarts: 1',
        'checkpoint: { interval: 1, keep_max: 20 }',
        jobExtra,
      ].join('\n') + '\n',
    );
    const dir = join(runs, name);
    const run = npurun([
      'launch',
      '--job',
      job,
      '--hosts',
      c.hostsFile(hosts, extraHosts),
      '--console',
      'all',
      '--run-dir',
      dir,
      ...flags,
    ]);
    let out = '';
    run.all?.on('data', (b: Buffer) => (out += b.toString()));
    const deadline = Date.now() + 60_000;
    while ((out.match(/epoch\[10\]/g) ?? []).length < hosts.length * 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const h2 = c.hosts[1] as SimHost;
    await c.cutLink(h2);
    try {
      const r = await run;
      const folder = join(dir, readdirSync(dir)[0] as string);
      return { r, folder, record: JSON.parse(readFileSync(join(folder, 'run.json'), 'utf8')) as RunJson };
    } finally {
      await c.restoreLink(h2);
    }
  }

  it('spare: the run finishes on the spare, resumed from the last complete checkpoint, with a new rank table and the same world size', async () => {
    const [h1, h2, h3] = c.hosts as [SimHost, SimHost, SimHost];
    const { r, folder, record } = await lose(
      'spare',
      [h1, h2],
      `spares:\n  - { name: ${h3.name}, address: ${h3.address} }\n`,
      '',
      [],
    );
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toMatch(/npurun: attempt 2: host h2 replaced by spare h3 \(4 ranks, as before\); new rank table\n/);
    expect(r.all).toMatch(/preflight: h2: FAILED/);
    expect(record.status).toBe('succeeded');
    const [first, second] = record.attempts;
    expect([first?.cause, first?.world_size, second?.cause, second?.world_size]).toEqual(['lost', 4, 'succeeded', 4]);
    expect(second?.replaced).toEqual([{ host: 'h2', by: 'h3' }]);
    expect(record.inventory.map((h) => h.name)).toEqual(['h1', 'h3']);
    expect(record.ranks.map((k) => `${k.label}@${k.host}`)).toEqual(['0@h1', '1@h1', '2@h3', '3@h3']);
    // Resumed from a complete step: every rank's own file of that epoch, which the ranks on the spare read.
    const from = second?.resumed_from;
    expect(from?.epoch).toBeGreaterThanOrEqual(1);
    expect(Object.keys(from?.files ?? {}).sort()).toEqual(['0', '1', '2', '3']);
    for (const label of ['2', '3']) {
      const [before, after] = rankStarts(folder, label);
      expect(before).toEqual({ world: 4, host: 'h2', table: 'ok', resume: '-' });
      // The rank table on h3 has h3's entry for this rank, and four ranks.
      expect(after).toMatchObject({ world: 4, host: 'h3', table: 'ok' });
      expect(after?.resume).toMatch(
        new RegExp(`/ckpt_${label}/${label}-${from?.epoch}_${(from?.epoch ?? 0) * 10}\\.ckpt$`),
      );
      const log = readFileSync(join(folder, 'logs', `rank-${label}.log`), 'utf8');
      expect(log).toMatch(new RegExp(`DONE ${label}`));
      expect(log).toMatch(/epoch\[16\]/);
    }
    expect(
      JSON.parse(readFileSync(join(folder, 'rank_table.json'), 'utf8')).server_list.map(
        (s: { server_id: string }) => s.server_id,
      ),
    ).toEqual([h1.address, h3.address]);
  }, 180_000);

  it("spare, with checkpoints on each host's own disk: the restart is refused naming the file the spare cannot see", async () => {
    const [h1, h2, h3] = c.hosts as [SimHost, SimHost, SimHost];
    // /tmp is each host's own: what h2's ranks saved there went down with h2.
    const { r, record } = await lose(
      'local-disk',
      [h1, h2],
      `spares:\n  - { name: ${h3.name}, address: ${h3.address} }\n`,
      '',
      [],
      '/tmp/npurun-host-loss-local',
    );
    expect(r.exitCode, r.all).toBe(3);
    expect(r.all).toMatch(
      /npurun: cannot restart: rank 2's checkpoint \/tmp\/npurun-host-loss-local\/train_parallel2\/ckpt_2\/2-\d+_\d+\.ckpt \(written on h2\) is not on h3: checkpoints must be on storage every host sees/,
    );
    expect(record.attempts.map((a) => a.cause)).toEqual(['lost']);
    for (const h of [h1, h2, h3]) await c.exec(h, ['rm', '-rf', '/tmp/npurun-host-loss-local']);
  }, 180_000);

  it('shrink: the run finishes on the hosts left, with fewer ranks, resumed from the last complete checkpoint', async () => {
    const [h1, h2] = c.hosts as [SimHost, SimHost];
    const { r, folder, record } = await lose('shrink', [h1, h2], '', 'resume_map: same-rank', [
      '--on-host-loss',
      'shrink',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toMatch(/npurun: attempt 2: going on without host h2: 2 ranks on 1 host \(was 4\); new rank table\n/);
    const [first, second] = record.attempts;
    expect([first?.cause, first?.world_size, second?.cause, second?.world_size]).toEqual(['lost', 4, 'succeeded', 2]);
    expect(second?.dropped).toEqual(['h2']);
    expect(record.world_size).toBe(2);
    expect(record.ranks.map((k) => `${k.label}@${k.host}`)).toEqual(['0@h1', '1@h1']);
    for (const label of ['0', '1']) {
      const [, after] = rankStarts(folder, label);
      expect(after).toMatchObject({ world: 2, host: 'h1', table: 'ok' });
      expect(after?.resume).toMatch(new RegExp(`/ckpt_${label}/${label}-${second?.resumed_from?.epoch}_\\d+\\.ckpt$`));
      expect(readFileSync(join(folder, 'logs', `rank-${label}.log`), 'utf8')).toMatch(new RegExp(`DONE ${label}`));
    }
  }, 180_000);

  it('neither spare nor shrink: the restart waits --host-wait for the host, then exits 3 naming it', async () => {
    const [h1, h2] = c.hosts as [SimHost, SimHost];
    const { r, record } = await lose('wait', [h1, h2], '', '', ['--host-wait', '20']);
    expect(r.exitCode, r.all).toBe(3);
    expect(r.all).toMatch(/restart: not every host is ready \(try 1\); waiting for them/);
    expect(r.all).toMatch(
      /npurun: cannot restart: host h2 could not be had within 20 s \(--host-wait\)\n {2}h2 \(10\.213\.0\.12\): /,
    );
    expect(record.status).toBe('failed');
    expect(record.exit_code).toBe(3);
    expect(record.attempts.map((a) => a.cause)).toEqual(['lost']);
  }, 180_000);
});

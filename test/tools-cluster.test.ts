import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, startCluster, type Cluster } from './cluster/index.js';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'npurun-tools-'));
const npurun = (args: string[]) =>
  execa('node', [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: '1' }, cwd: work });

describeCluster('devices, rank tables, dry run, ps/kill and ProxyJump across real hosts', () => {
  let c: Cluster;
  let two: string;
  beforeAll(async () => {
    c = await startCluster(3, (i) => [{}, { held: [{ device: 5, pid: 271828 }] }, { devices: 4 }][i] ?? {});
    two = c.hostsFile(c.hosts.slice(0, 2));
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    expect(await c.waitForNoLeftovers(5000)).toEqual([]);
  });

  it('devices --hosts probes every host over SSH and reports the held device', async () => {
    const r = await npurun(['devices', '--hosts', two]);
    expect(r.exitCode, r.all).toBe(1);
    expect(r.stdout).toMatch(/h1: 8 NPUs via \/usr\/local\/Ascend\/driver\/tools\/npu-smi/);
    expect(r.stdout).toMatch(/problem: device 5 is held by pid 271828 \(python3\)/);
    const json = JSON.parse((await npurun(['devices', '--hosts', two, '--json'])).stdout) as Record<
      string,
      { devices: { deviceIp: string }[] }
    >;
    expect(json.h2?.devices[3]?.deviceIp).toBe('192.168.2.103');
  });

  it('ranktable generate --hosts writes one merged table numbered server by server; validate --hosts cross-checks it live', async () => {
    const out = join(work, 'tables');
    const g = await npurun(['ranktable', 'generate', '--hosts', two, '--devices', '0-3', '--out', out + '/']);
    expect(g.exitCode, g.all).toBe(0);
    const file = g.stdout.trim();
    expect(file).toBe(join(out, 'hccl_2s_8p.json'));
    const table = JSON.parse(readFileSync(file, 'utf8')) as {
      server_list: { server_id: string; device: { device_ip: string; rank_id: string }[] }[];
    };
    expect(table.server_list.map((s) => s.server_id)).toEqual(['10.213.0.11', '10.213.0.12']);
    expect(table.server_list[1]!.device.map((d) => d.rank_id)).toEqual(['4', '5', '6', '7']);
    expect((await npurun(['ranktable', 'validate', file, '--hosts', two])).exitCode).toBe(0);
    table.server_list[1]!.device[2]!.device_ip = '192.168.2.99';
    writeFileSync(file, JSON.stringify(table, null, 4));
    const bad = await npurun(['ranktable', 'validate', file, '--hosts', two]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(
      /server_list\[1\]\.device\[2\]\.device_ip: 192\.168\.2\.99, but host h2 reports 192\.168\.2\.102 for device 2/,
    );
  });

  it('--dry-run prints the whole plan and starts nothing; a held device fails preflight with exit 3', async () => {
    // A command that would leave a mark on every host it ran on.
    const marks = async () =>
      (
        await Promise.all(
          c.hosts.map(async (h) => ((await c.exec(h, ['test', '-e', '/tmp/ran-mark'])).code === 0 ? [h.name] : [])),
        )
      ).flat();
    const dry = await npurun([
      'launch',
      '--hosts',
      two,
      '--devices',
      '0-3',
      '--dry-run',
      '--',
      'sh',
      '-c',
      'touch /tmp/ran-mark',
    ]);
    expect(dry.exitCode, dry.all).toBe(0);
    expect(await marks()).toEqual([]);
    const r = await npurun([
      'launch',
      '--hosts',
      two,
      '--devices',
      '0-3',
      '--dry-run',
      '--json',
      '--',
      'python3',
      'train.py',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    const plan = JSON.parse(r.stdout) as {
      ranks: { label: string; host: string; deviceId: number; env: Record<string, string>; argv: string[] }[];
      rankTable: unknown;
    };
    expect(plan.ranks.map((x) => `${x.label}@${x.host}:${x.deviceId}`)).toEqual([
      '0@h1:0',
      '1@h1:1',
      '2@h1:2',
      '3@h1:3',
      '4@h2:0',
      '5@h2:1',
      '6@h2:2',
      '7@h2:3',
    ]);
    // The remote run dir is /tmp/npurun-{uid}/{run_id}, expanded on the hosts (uid 0: the cluster logs in as root).
    expect(plan.ranks[5]!.env.RANK_TABLE_FILE).toMatch(/^\/tmp\/npurun-0\/.+\/rank_table\.json$/);
    expect(plan.rankTable).toBeDefined();
    const held = await npurun(['launch', '--hosts', two, '--devices', '4-7', '--', 'sh', '-c', 'touch /tmp/ran-mark']);
    expect(held.exitCode).toBe(3);
    expect(held.stderr).toMatch(/host h2: device 5 held by pid 271828/);
    expect(await marks()).toEqual([]);
    // The same command without the held device does leave its mark: the check above can see one.
    const ran = await npurun([
      'launch',
      '--hosts',
      two,
      '--devices',
      '0-3',
      '--profile',
      'torch',
      '--nproc-per-node',
      '1',
      '--run-dir',
      join(work, 'mark-runs'),
      '--',
      'sh',
      '-c',
      'touch /tmp/ran-mark',
    ]);
    expect(ran.exitCode, ran.all).toBe(0);
    expect(await marks()).toEqual(['h1', 'h2']);
    for (const h of c.hosts) await c.exec(h, ['rm', '-f', '/tmp/ran-mark']);
  });

  // With its launcher alive, kill asks the launcher to stop the run, then checks every host by the recorded
  // pid files (killing what is left there); the kill of ranks whose launcher is gone is tested in agent-local.
  it('ps lists a live run on every host; kill asks its launcher to stop it, then finds nothing left on any host', async () => {
    const runs = join(work, 'runs');
    const p = npurun([
      'launch',
      '--hosts',
      two,
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
      'echo started; sleep 60',
    ]);
    let seen = 0;
    p.stdout?.on('data', (d: Buffer) => (seen += (d.toString().match(/started/g) ?? []).length));
    while (seen < 4) await new Promise((res) => setTimeout(res, 50));
    // Without a run id, ps looks at this machine only, where the run has nothing.
    const local = await npurun(['ps', '--run-dir', runs]);
    expect(local.exitCode).toBe(0);
    expect(local.stdout).toMatch(/: nothing left/);
    const runId = (await execa('ls', [runs])).stdout.trim();
    const listed = await npurun(['ps', runId, '--run-dir', runs]);
    expect(listed.exitCode, listed.all).toBe(0);
    expect(listed.stdout.match(/: running \(/g)).toHaveLength(4);
    expect(listed.stdout).toMatch(/h2: run \S+ rank 3 pid \d+: running/);
    const killed = await npurun(['kill', runId, '--run-dir', runs, '--grace', '2']);
    expect(killed.exitCode, killed.all).toBe(0);
    expect(killed.stderr).toMatch(new RegExp(`asked the launcher of ${runId} \\(pid \\d+\\) to stop the run`));
    // Both hosts were checked afterwards: each rank is "killed" or gone, never still running.
    expect(killed.stdout).not.toMatch(/STILL RUNNING/);
    for (const h of ['h1', 'h2'])
      expect(killed.stdout).toMatch(
        new RegExp(`^${h}: (nothing left by ${runId}|run \\S+ rank \\d+ pid \\d+: killed)`, 'm'),
      );
    const r = await p;
    expect(r.exitCode).toBe(143);
    expect(r.stderr).toMatch(/stopped by npurun kill/);
    const record = JSON.parse(readFileSync(join(runs, runId, 'run.json'), 'utf8')) as {
      stopped_by?: string;
      ranks: { exit: { cause: string } }[];
    };
    expect(record.stopped_by).toMatch(/^npurun kill \(user .+, pid \d+\)$/);
    expect(record.ranks.map((x) => x.exit.cause)).toEqual(['stopped', 'stopped', 'stopped', 'stopped']);
  });

  it('a "host slots=N" hostfile of ssh_config aliases, authenticated through ssh-agent only', async () => {
    const agent = await execa('ssh-agent', ['-s']);
    const sock = (/SSH_AUTH_SOCK=([^;]+);/.exec(agent.stdout) as RegExpExecArray)[1] as string;
    const agentPid = (/SSH_AGENT_PID=(\d+);/.exec(agent.stdout) as RegExpExecArray)[1] as string;
    try {
      await execa('ssh-add', [c.keyPath], { env: { SSH_AUTH_SOCK: sock } });
      // The config names no identity file: only the agent holds the key.
      const config = join(work, 'agent_config');
      writeFileSync(
        config,
        readFileSync(c.sshConfigPath, 'utf8').replace(/^\s*IdentityFile .*$/gm, '  IdentityFile /nonexistent/key'),
      );
      const hostfile = join(work, 'hostfile');
      writeFileSync(hostfile, '# DeepSpeed-style\nh1 slots=2\nh2 slots=2\n');
      const r = await execa(
        'node',
        [
          BIN,
          'launch',
          '--hosts',
          hostfile,
          '--ssh-config',
          config,
          '--profile',
          'torch',
          '--console',
          'all',
          '--workdir',
          '/tmp/w',
          '--run-dir',
          join(work, 'runs'),
          '--',
          'sh',
          '-c',
          'echo "rank $RANK on $MASTER_ADDR"',
        ],
        {
          reject: false,
          all: true,
          env: { NO_COLOR: '1', SSH_AUTH_SOCK: sock },
        },
      );
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stdout.match(/rank \d on 10\.213\.0\.11/g)).toHaveLength(4);
    } finally {
      process.kill(Number(agentPid));
    }
  });

  it('ProxyJump from ~/.ssh/config: a host reached through another one', async () => {
    const config = join(work, 'ssh_config');
    writeFileSync(config, `Host h3\n  ProxyJump h1\n\n${readFileSync(c.sshConfigPath, 'utf8')}`);
    const inv = join(work, 'jump.yaml');
    writeFileSync(inv, 'hosts:\n  - { address: h3 }\n');
    const r = await npurun([
      'launch',
      '--hosts',
      inv,
      '--ssh-config',
      config,
      '--profile',
      'torch',
      '--nproc-per-node',
      '1',
      '--console',
      'all',
      '--workdir',
      '/tmp/w',
      '--run-dir',
      join(work, 'runs'),
      '--',
      'sh',
      '-c',
      'echo "via $SSH_CLIENT"',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    // sshd on h3 saw the connection come from h1's address: it went through the jump host.
    expect(r.stdout).toMatch(/via 10\.213\.0\.11 /);
  });
});

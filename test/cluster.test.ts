import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeHost } from '../src/devices/probe.js';
import {
  CLUSTER_SH,
  CLUSTER_START_TIMEOUT,
  describeCluster,
  startCluster,
  type Cluster,
  type SimHost,
} from './cluster/index.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

/** The system ssh client as a test would use it: the cluster's key and known_hosts, strict checking. */
function ssh(c: Cluster, host: SimHost, command: string, input?: string) {
  const args = [
    '-i',
    c.keyPath,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${c.knownHostsPath}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
  ];
  args.push(
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=2',
    '-p',
    String(host.sshPort),
    `${c.user}@${host.address}`,
    command,
  );
  return execa('ssh', args, { reject: false, ...(input === undefined ? {} : { input }) });
}

async function netnsOfPrefix(): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] as string)
    .filter((name) => name.startsWith('npc-'));
}

/** Whether a process runs (a killed one may stay a zombie until init reaps it). */
function alive(pid: number): boolean {
  const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
  return stat !== '' && !/^\d+ \(.*\) Z/.test(stat);
}

async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  let value = await probe();
  while (!done(value) && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await probe();
  }
  return value;
}

/** The machine's own files a host's overlays and binds stand in for: what they hold, not only whether they exist. */
const REAL_PATHS = [
  '/etc/hccn.conf',
  '/etc/hostname',
  '/etc/hosts',
  '/etc/shadow',
  '/usr/local/Ascend',
  '/usr/local/Ascend/driver/tools',
  '/root/.bashrc',
  '/root/.profile',
  '/tmp/npc-mark',
];
function snapshot(): Record<string, string> {
  return Object.fromEntries(
    REAL_PATHS.map((path) => {
      let st;
      try {
        st = lstatSync(path);
      } catch {
        return [path, 'absent'];
      }
      if (st.isDirectory()) return [path, `dir mtime ${st.mtimeMs} entries ${readdirSync(path).sort().join(',')}`];
      const sha = st.isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'not a file';
      return [path, `mode ${st.mode} size ${st.size} mtime ${st.mtimeMs} sha256 ${sha}`];
    }),
  );
}

describeCluster('test cluster: namespaced Ascend hosts behind real sshd', () => {
  let before: Record<string, string> = {};
  let c: Cluster | undefined;
  const cluster = () => c as Cluster;
  const host = (i: number) => cluster().hosts[i] as SimHost;

  beforeAll(async () => {
    before = snapshot();
    c = await startCluster(
      6,
      (i) =>
        [
          { unhealthy: [3], held: [{ device: 5, pid: 271828 }] },
          { devices: 4, noHccnEntry: [1], noAddress: [2] },
          { chip: 'A3' as const },
          { wrongHostKey: true },
          { noSshd: true, noDriver: true },
          {
            chip: 'A3' as const,
            devices: 7,
            missing: [2],
            unhealthy: [6],
            held: [
              { device: 5, pid: 4242 },
              { device: 5, pid: 4243 },
            ],
          },
        ][i] ?? {},
    );
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());

  it('every host answers over SSH with its own hostname, address, hccn.conf and /tmp', async () => {
    const answers = await Promise.all(
      [0, 1, 2].map((i) => ssh(cluster(), host(i), 'hostname; ip -4 -o addr show eth0; cat /etc/hccn.conf')),
    );
    answers.forEach((a, i) => {
      expect(a.exitCode, a.stderr).toBe(0);
      const [hostname, addr] = a.stdout.split('\n');
      expect(hostname).toBe(host(i).name);
      expect(addr).toContain(`inet ${host(i).address}/24`);
      expect(a.stdout).toContain(`address_0=192.168.${i + 1}.100`);
    });
    // Nothing of the hosts' private files lands on the real root filesystem: whatever the machine has
    // there (an Ascend server has /etc/hccn.conf and /usr/local/Ascend) is as it was.
    expect(snapshot()).toEqual(before);

    expect((await ssh(cluster(), host(0), 'echo from-h1 > /tmp/npc-mark')).exitCode).toBe(0);
    expect((await ssh(cluster(), host(0), 'cat /tmp/npc-mark')).stdout).toBe('from-h1');
    expect((await ssh(cluster(), host(1), 'test -e /tmp/npc-mark')).exitCode).toBe(1);
    expect(readFileSync(`${host(0).root}/tmp/npc-mark`, 'utf8')).toBe('from-h1\n');
    expect(snapshot()).toEqual(before);
  });

  it('the ssh_config names every host, and hosts reach each other over the bridge', async () => {
    const r = await execa(
      'ssh',
      [
        '-F',
        cluster().sshConfigPath,
        '-o',
        'BatchMode=yes',
        'h2',
        `exec 3<>/dev/tcp/${host(0).address}/22; head -c 8 <&3`,
      ],
      { reject: false },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('SSH-2.0-');
  });

  it("npu-smi stand-ins print the fixtures byte for byte when given the fixtures' state", async () => {
    const npuSmi = '/usr/local/Ascend/driver/tools/npu-smi info';
    expect((await ssh(cluster(), host(0), npuSmi)).stdout + '\n').toBe(fixture('npu-smi-info-910b.txt'));
    expect((await ssh(cluster(), host(2), npuSmi)).stdout + '\n').toBe(fixture('npu-smi-info-a3.txt'));
    expect(
      (await cluster().exec(host(0), ['/usr/local/Ascend/driver/tools/hccn_tool', '-i', '0', '-ip', '-g'])).stdout,
    ).toBe(fixture('hccn_tool-i0-ip-g.txt').trimEnd().replace('192.168.100.101', '192.168.1.100'));
  });

  it("npurun's device probe over SSH sees each host's devices, health, holders and addresses", async () => {
    const probe = (i: number) =>
      probeHost(async (script) => {
        const r = await ssh(cluster(), host(i), 'sh -s', script);
        return { stdout: r.stdout, stderr: r.stderr, code: r.exitCode ?? null };
      });
    const [h1, h2, h3, h6] = await Promise.all([probe(0), probe(1), probe(2), probe(5)]);
    expect(h1.hostname).toBe('h1');
    expect(h1.problems).toEqual(['device 3 health is Warning', 'device 5 is held by pid 271828 (python3)']);
    expect(h1.devices.map((d) => d.deviceIp)).toEqual(Object.values(host(0).deviceIps));

    // devices: 4, device 1 only known to hccn_tool, device 2 known to nobody.
    expect(h2.devices.map((d) => [d.deviceId, d.deviceIp, d.ipSource])).toEqual([
      [0, '192.168.2.100', 'hccn.conf'],
      [1, '192.168.2.101', 'hccn_tool'],
      [2, undefined, undefined],
      [3, '192.168.2.103', 'hccn.conf'],
    ]);
    expect(h2.problems).toEqual([expect.stringMatching(/^device 2 has no address/)]);
    expect(host(1).deviceIps).toEqual({ 0: '192.168.2.100', 1: '192.168.2.101', 3: '192.168.2.103' });

    expect(h3.devices.map((d) => [d.npuId, d.chipId, d.deviceId])).toEqual(
      Array.from({ length: 16 }, (_, id) => [id >> 1, id & 1, id]),
    );
    // A3 with 7 devices, device 2 missing: NPU 1 keeps chip 1 only, NPU 3 chip 0 only.
    expect(h6.devices.map((d) => [d.npuId, d.chipId, d.deviceId, d.health])).toEqual([
      [0, 0, 0, 'OK'],
      [0, 1, 1, 'OK'],
      [1, 1, 3, 'OK'],
      [2, 0, 4, 'OK'],
      [2, 1, 5, 'OK'],
      [3, 0, 6, 'Warning'],
    ]);
    expect(h6.problems).toEqual([
      'device 5 is held by pid 4242 (python3)',
      'device 5 is held by pid 4243 (python3)',
      'device 6 health is Warning',
    ]);
    const all = [h1, h2, h3, h6].flatMap((h) => h.devices.flatMap((d) => (d.deviceIp ? [d.deviceIp] : [])));
    expect(new Set(all).size).toBe(all.length);
  });

  it("a process started over SSH on one host is that host's leftover only, until it ends", async () => {
    expect((await ssh(cluster(), host(0), 'setsid sleep 30 < /dev/null > /dev/null 2>&1 &')).exitCode).toBe(0);
    // The session's own sshd process leaves a moment after the client: wait for the sleep alone.
    const left = await eventually(
      () => cluster().leftovers(),
      (l) => l.length === 1,
    );
    expect(left.map((l) => [l.host, l.cmdline])).toEqual([['h1', 'sleep 30']]);
    const pid = (left[0] as { pid: number }).pid;
    expect(await cluster().pids(host(0))).toEqual([pid]);
    for (const i of [1, 2, 3, 4, 5]) expect(await cluster().pids(host(i))).toEqual([]);

    expect((await cluster().exec(host(0), ['kill', String(pid)])).code).toBe(0);
    expect(await cluster().waitForNoLeftovers()).toEqual([]);
  });

  it('strict host-key checking rejects a host with the wrong key; a host without sshd refuses', async () => {
    const wrong = await ssh(cluster(), host(3), 'true');
    expect(wrong.exitCode).toBe(255);
    expect(wrong.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/);
    const refused = await ssh(cluster(), host(4), 'true');
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/Connection refused/);
    // Without sshd the host still exists for exec; this one has no Ascend driver either.
    const h5 = await cluster().exec(host(4), ['sh', '-c', 'hostname; ls /usr/local/Ascend; ls -d /usr/local/bin']);
    expect(h5.stdout).toBe('h5\n/usr/local/bin');
    expect(h5.stderr).toMatch(/cannot access '\/usr\/local\/Ascend'/);
  });

  it('a cut link makes a host unreachable until it is restored', async () => {
    await cluster().cutLink(host(0));
    const cut = await ssh(cluster(), host(0), 'true');
    expect(cut.exitCode).toBe(255);
    expect(cut.stderr).toMatch(/timed out|No route to host/);
    expect((await ssh(cluster(), host(1), 'true')).exitCode).toBe(0);
    await cluster().restoreLink(host(0));
    expect((await ssh(cluster(), host(0), 'echo back')).stdout).toBe('back');
  });

  it('another process cannot take the cluster while its owner lives', async () => {
    const r = await execa(CLUSTER_SH, ['up', '1', '--owner', '1', '--wait', '1'], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`belongs to live process ${process.pid}`);
    expect((await ssh(cluster(), host(0), 'true')).exitCode).toBe(0);
  });

  it('stop removes every namespace; a crashed cluster is cleared by the next start', async () => {
    await cluster().stop();
    await cluster().stop();
    expect(await netnsOfPrefix()).toEqual([]);
    expect(existsSync(cluster().dir)).toBe(false);
    expect(snapshot()).toEqual(before);

    // A run that died without stop(): its owner (pid 2^22 + 1 is above pid_max) is gone.
    const crashed = await execa(CLUSTER_SH, ['up', '2', '--owner', '4194305']);
    expect(crashed.exitCode).toBe(0);
    const orphan = await execa('nsenter', [
      '--net=/run/netns/npc-h2',
      'sh',
      '-c',
      'setsid sleep 60 < /dev/null > /dev/null 2>&1 & echo $!',
    ]);
    const orphanPid = Number(orphan.stdout.trim());
    c = await startCluster(1);
    expect(await netnsOfPrefix()).toEqual(['npc-h1']);
    expect(alive(orphanPid)).toBe(false);
    expect((await ssh(cluster(), host(0), 'echo ok')).stdout).toBe('ok');
    await cluster().stop();
  });

  it('slow login: ~/.bashrc runs once per ssh command and sftp session, puts the python3 shim first, and waits on the lock every host shares', async () => {
    c = await startCluster(3, (i) => (i < 2 ? { slowLogin: { sleepMs: 300 } } : {}));
    const [h1, h2, h3] = [host(0), host(1), host(2)];
    expect((await ssh(cluster(), h3, 'command -v python3')).stdout).toBe('/usr/bin/python3');
    expect((await cluster().logins(h3)).map((l) => l.command)).toEqual(['command -v python3']);
    expect(await cluster().shimRuns(h3)).toEqual([]);

    const t0 = Date.now();
    const py = await ssh(cluster(), h1, 'command -v python3; python3 -c "import sys; print(sys.executable)"');
    const slowMs = Date.now() - t0;
    expect(py.stdout.split('\n')).toEqual([`${cluster().dir}/pyenv/shims/python3`, '/usr/bin/python3']);
    expect(slowMs).toBeGreaterThanOrEqual(300);
    const logins = await cluster().logins(h1);
    expect(logins.map((l) => l.command)).toEqual([
      'command -v python3; python3 -c "import sys; print(sys.executable)"',
    ]);
    expect((await cluster().shimRuns(h1)).map((l) => [l.pid, l.command])).toEqual([
      [logins[0]?.pid, '-c import sys; print(sys.executable)'],
    ]);

    // The sftp subsystem is started through the login shell too; a multi-line command is one login.
    const sftp = await execa('sftp', ['-F', cluster().sshConfigPath, '-b', '-', 'h2'], {
      input: 'ls /tmp\n',
      reject: false,
    });
    expect(sftp.exitCode, sftp.stderr).toBe(0);
    expect((await ssh(cluster(), h2, 'echo a\necho b')).stdout).toBe('a\nb');
    expect((await cluster().logins(h2)).map((l) => l.command)).toEqual([
      '/usr/lib/openssh/sftp-server',
      'echo a\\necho b',
    ]);

    // While someone holds the shared lock (one host's login, or here the test), logins on every slow host wait.
    const holder = execa('flock', [cluster().loginLockPath, 'sleep', '2']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const t1 = Date.now();
    const waited = await Promise.all(
      [h1, h2].map(async (h) => {
        const r = await ssh(cluster(), h, 'true');
        return [r.exitCode, Date.now() - t1 >= 1700];
      }),
    );
    expect(waited).toEqual([
      [0, true],
      [0, true],
    ]);
    await holder;
    const t2 = Date.now();
    expect((await ssh(cluster(), h3, 'true')).exitCode).toBe(0);
    process.stdout.write(`slow login: ssh + python3 ${slowMs} ms; plain ssh true ${Date.now() - t2} ms\n`);
    await cluster().stop();
  });
});

// The skip and the CI failure are what a machine without root sees: run every cluster test file as nobody.
const CLUSTER_FILES = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f === 'cluster.test.ts' || f.endsWith('-cluster.test.ts'))
  .sort()
  .map((f) => `test/${f}`);

describe.runIf(process.getuid?.() === 0)(
  'test cluster prerequisites: skipped with the reason, failing under CI=true',
  () => {
    const asNobody = (ci: string) =>
      execa(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          'node_modules/.bin/vitest',
          'run',
          ...CLUSTER_FILES,
          '--configLoader',
          'runner',
        ],
        {
          reject: false,
          cwd: new URL('..', import.meta.url),
          env: { CI: ci, HOME: '/nonexistent', NO_COLOR: '1' },
          all: true,
        },
      );

    it('every cluster file uses the one harness', () => {
      expect(CLUSTER_FILES.length).toBeGreaterThanOrEqual(4);
      for (const f of CLUSTER_FILES)
        expect(readFileSync(new URL(`../${f}`, import.meta.url), 'utf8'), f).toMatch(/from '\.\/cluster\/index\.js'/);
    });

    it('skips every cluster suite with a one-line reason', async () => {
      const r = await asNobody('');
      expect(r.exitCode, r.all).toBe(0);
      expect(r.all).toContain(
        'skipping "test cluster: namespaced Ascend hosts behind real sshd": test cluster unavailable: needs root',
      );
      expect(r.all.match(/^skipping ".*": test cluster unavailable: needs root/gm), r.all).toHaveLength(
        CLUSTER_FILES.length,
      );
      // Every test of every file skipped, none run.
      expect(r.all).toMatch(new RegExp(`Test Files\\s+${CLUSTER_FILES.length} skipped \\(${CLUSTER_FILES.length}\\)`));
      expect(r.all).toMatch(/Tests\s+(\d+) skipped \(\1\)/);
    }, 120_000);

    it('a test needing torch is skipped with the reason without it, and fails under CI=true', async () => {
      const withoutTorch = (ci: string) =>
        execa(
          'node_modules/.bin/vitest',
          ['run', 'test/launch-cluster.test.ts', '-t', 'real PyTorch', '--configLoader', 'runner'],
          {
            reject: false,
            cwd: new URL('..', import.meta.url),
            env: { CI: ci, NPURUN_TEST_NO_TORCH: '1', NO_COLOR: '1' },
            all: true,
          },
        );
      const skipped = await withoutTorch('');
      expect(skipped.exitCode, skipped.all).toBe(0);
      expect(skipped.all).toContain(
        'skipping "a real PyTorch job (gloo) all_reduces across 4 hosts": NPURUN_TEST_NO_TORCH=1 (torch treated as missing)',
      );
      expect(skipped.all).toMatch(/Tests\s+(\d+) skipped \(\1\)/);
      const failed = await withoutTorch('true');
      expect(failed.exitCode).toBe(1);
      expect(failed.all).toContain('torch unavailable (CI=true makes this a failure): NPURUN_TEST_NO_TORCH=1');
    }, 300_000);

    it('fails every cluster file instead under CI=true', async () => {
      const r = await asNobody('true');
      expect(r.exitCode).toBe(1);
      expect(r.all).toContain('test cluster unavailable (CI=true makes this a failure): needs root');
      expect(r.all).toMatch(new RegExp(`Test Files\\s+${CLUSTER_FILES.length} failed \\(${CLUSTER_FILES.length}\\)`));
    }, 120_000);
  },
);

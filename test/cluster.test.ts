import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeCluster, startCluster, type Cluster } from './sim/index.js';

function ssh(c: Cluster, host: string, cmd: string) {
  return execa('ssh', ['-F', c.sshConfigPath, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=3', host, cmd], { reject: false });
}

describeCluster('simulated cluster: namespaced hosts with real sshd', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster(4, ['2:devices=4', '3:wrongkey', '4:nosshd']);
  });
  afterAll(async () => c?.stop());

  it('each host answers over SSH with its own address, hccn.conf, npu-smi and /tmp', async () => {
    const a = await ssh(c, 'h1', 'ip -4 -o addr show eth0; cat /etc/hccn.conf | head -1; /usr/local/Ascend/driver/tools/npu-smi info | grep -c 910B3; echo mark > /tmp/only-h1');
    expect(a.exitCode).toBe(0);
    expect(a.stdout).toContain('10.213.0.11/24');
    expect(a.stdout).toContain('address_0=192.168.100.11');
    expect(a.stdout.trim().split('\n').at(-1)).toBe('8');
    const b = await ssh(c, 'h2', 'ip -4 -o addr show eth0; head -1 /etc/hccn.conf; /usr/local/Ascend/driver/tools/npu-smi info | grep -c 910B3; ls /tmp/only-h1 2>&1 || true');
    expect(b.stdout).toContain('10.213.0.12/24');
    expect(b.stdout).toContain('address_0=192.168.100.12');
    expect(b.stdout).toMatch(/\n4\n/);
    expect(b.stdout).toMatch(/No such file/);
  });

  it('a process started on one host shows in that host only, and is reported as a leftover', async () => {
    await ssh(c, 'h1', 'setsid sleep 30 < /dev/null > /dev/null 2>&1 &');
    const left = await c.leftovers();
    expect(left.map((l) => [l.host, l.cmdline])).toEqual([['h1', 'sleep 30']]);
    await c.exec(c.hosts[0]!, ['pkill', '-x', 'sleep']);
    expect(await c.waitNoLeftovers(3000)).toEqual([]);
  });

  it('strict host-key checking rejects the host with a wrong key; a host without sshd refuses', async () => {
    const wrong = await ssh(c, 'h3', 'true');
    expect(wrong.exitCode).toBe(255);
    expect(wrong.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    const refused = await ssh(c, 'h4', 'true');
    expect(refused.stderr).toMatch(/Connection refused/);
  });

  it('a cut link makes the host unreachable until restored', async () => {
    await c.cut(c.hosts[0]!);
    const cut = await ssh(c, 'h1', 'true');
    expect(cut.exitCode).toBe(255);
    await c.restore(c.hosts[0]!);
    const back = await ssh(c, 'h1', 'true');
    expect(back.exitCode).toBe(0);
  });

  it('16 hosts come up, all answer, and a second setup after teardown works', async () => {
    await c.stop();
    const started = Date.now();
    c = await startCluster(16);
    const answers = await Promise.all(c.hosts.map((h) => ssh(c, h.name, 'hostname -I')));
    expect(answers.map((a) => a.stdout.trim())).toEqual(c.hosts.map((h) => h.address));
    expect(Date.now() - started).toBeLessThan(30_000);
    await c.stop();
    const { stdout } = await execa('ip', ['netns', 'list']);
    expect(stdout).not.toMatch(/npr-h/);
    c = await startCluster(1);
    expect((await ssh(c, 'h1', 'echo ok')).stdout.trim()).toBe('ok');
  });
});

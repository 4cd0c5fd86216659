import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, startCluster, type Cluster } from './cluster/index.js';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'npurun-jump-'));
const npurun = (args: string[]) =>
  execa('node', [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: '1' }, cwd: work });

/** Connections h3's sshd accepted, by the address they came from. */
function acceptedFrom(c: Cluster, address: string): number {
  const log = readFileSync(join(c.dir, 'hosts', 'h3', 'sshd.log'), 'utf8');
  return log.split('\n').filter((l) => l.includes('Accepted ') && l.includes(` from ${address} `)).length;
}

describeCluster('a host behind ProxyJump a,b (two hops), set by a Match block only ssh -G reads', () => {
  let c: Cluster;
  let config: string;
  let inv: string;
  beforeAll(async () => {
    c = await startCluster(3);
    // Only `Match` sends h3 through h1 then h2: npurun's own parser skips Match and would connect
    // directly (h3 is reachable from here too), so a connection from h2's address proves ssh -G was read.
    config = join(work, 'ssh_config');
    writeFileSync(config, `Match host h3\n  ProxyJump h1,h2\n\n${readFileSync(c.sshConfigPath, 'utf8')}`);
    inv = join(work, 'behind-two.yaml');
    writeFileSync(inv, 'hosts:\n  - { address: h3 }\n');
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    expect(await c.waitForNoLeftovers(5000)).toEqual([]);
  });

  it('devices --hosts probes h3 through h1 and h2', async () => {
    const before = acceptedFrom(c, '10.213.0.12');
    const r = await npurun(['devices', '--hosts', inv, '--ssh-config', config, '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const report = JSON.parse(r.stdout) as
      Record<string, { devices: unknown[] }> | { hosts: Record<string, { devices: unknown[] }> };
    expect(JSON.stringify(report)).toContain('h3');
    expect(acceptedFrom(c, '10.213.0.12')).toBe(before + 1);
    expect(acceptedFrom(c, '10.213.0.1')).toBe(0);
  });

  it('ps --hosts reaches h3 through both hops and finds nothing left', async () => {
    const before = acceptedFrom(c, '10.213.0.12');
    const r = await npurun(['ps', '--hosts', inv, '--ssh-config', config]);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/^h3: nothing left$/m);
    expect(acceptedFrom(c, '10.213.0.12')).toBe(before + 1);
  });

  it('a hop that cannot be reached fails that host with exit 3, naming it', async () => {
    const broken = join(work, 'ssh_config_broken');
    writeFileSync(
      broken,
      `Match host h3\n  ProxyJump h1,nohop\nHost nohop\n  HostName 10.213.0.250\n  ConnectTimeout 2\n\n${readFileSync(c.sshConfigPath, 'utf8')}`,
    );
    const r = await npurun(['ps', '--hosts', inv, '--ssh-config', broken]);
    expect(r.exitCode, r.all).toBe(3);
    expect(r.stdout).toMatch(/^h3: unreachable: host h3: .*(jump host nohop|10\.213\.0\.250)/m);
  }, 60_000);
});

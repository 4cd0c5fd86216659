import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadHostsFile, loadInventory } from '../src/inventory/inventory.js';

const dir = fileURLToPath(new URL('../hosts/', import.meta.url));

describe('example inventories in hosts/', () => {
  it.each(readdirSync(dir).filter((f) => f !== 'README.md'))('%s loads', async (file) => {
    const hosts = await loadInventory(dir + file, { sshConfigText: '', home: '/home/u' });
    expect(hosts.length).toBeGreaterThanOrEqual(2);
    for (const h of hosts) expect(h.ssh?.strictHostKeyChecking).toBe('yes');
  });
  it('two-servers.yaml: names, addresses, defaults applied', async () => {
    const [a, b] = await loadInventory(dir + 'two-servers.yaml', { home: '/home/u' });
    expect([a?.name, a?.address, b?.name, b?.address]).toEqual([
      'server-a',
      '10.155.111.140',
      'server-b',
      '10.155.111.141',
    ]);
    expect(a?.ssh).toMatchObject({
      user: 'root',
      port: 22,
      identityFiles: ['/home/u/.ssh/id_ed25519'],
      knownHostsFiles: ['/home/u/.ssh/known_hosts'],
    });
  });
  it('with-spares.yaml: two hosts and one spare, defaults applied to it', async () => {
    const { hosts, spares } = await loadHostsFile(dir + 'with-spares.yaml', { home: '/home/u' });
    expect([hosts.map((h) => h.name), spares.map((h) => [h.name, h.address, h.ssh?.user])]).toEqual([
      ['server-a', 'server-b'],
      [['server-c', '10.155.111.142', 'root']],
    ]);
  });
  it('behind-jump-host.yaml keeps the jump host and slots', async () => {
    const hosts = await loadInventory(dir + 'behind-jump-host.yaml', { home: '/home/u' });
    expect(hosts[0]).toMatchObject({
      name: 'node01',
      slots: 8,
      ssh: { user: 'hpcuser', proxyJump: 'hpcuser@login.example.com:22' },
    });
  });
});

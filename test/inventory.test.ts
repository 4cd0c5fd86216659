import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { NpurunError } from '../src/errors.js';
import { loadHostsFile, loadInventory, localHost, parseHostfile } from '../src/inventory/inventory.js';
import type { HostSpec } from '../src/inventory/types.js';

const dir = fileURLToPath(new URL('./fixtures/inventory/', import.meta.url));
const home = '/home/u';

describe('YAML inventories', () => {
  const sshConfigText = readFileSync(dir + 'ssh_config', 'utf8');
  let hosts: HostSpec[] = [];
  beforeAll(async () => {
    hosts = await loadInventory(dir + 'good-full.yaml', { sshConfigText, home });
  });

  it('reads every host in order with defaults applied', async () => {
    expect(hosts.map((h) => [h.name, h.address, h.local, h.devices])).toEqual([
      ['server-a', '10.0.0.11', false, 'auto'],
      ['server-b', '10.0.0.12', false, [0, 1, 2, 3]],
      ['server-c', '10.0.0.13', false, [4, 5, 6, 7]],
    ]);
    expect(hosts[0]?.ssh).toEqual({
      hostname: '10.0.0.11',
      user: 'root',
      port: 22,
      identityFiles: ['/home/u/.ssh/id_ed25519'],
      knownHostsFiles: ['/home/u/.ssh/known_hosts'],
      strictHostKeyChecking: 'yes',
      useAgent: true,
    });
  });

  it('an ssh_config alias becomes its HostName address; values in the file win over ssh_config', async () => {
    // defaults set user, port and identity_file explicitly: those win over the alias's User/Port/IdentityFile.
    expect(hosts[1]).toMatchObject({
      name: 'server-b',
      address: '10.0.0.12',
      ssh: { hostname: '10.0.0.12', user: 'root', port: 22, identityFiles: ['/home/u/.ssh/id_ed25519'] },
    });
  });

  it('per-host settings override defaults; relative key paths are relative to the hosts file', async () => {
    expect(hosts[2]).toMatchObject({
      slots: 4,
      ssh: {
        user: 'trainer',
        port: 2222,
        identityFiles: [dir + 'keys/id_c'],
        strictHostKeyChecking: 'accept-new',
        proxyJump: 'jump@login:22',
      },
    });
  });

  it('reports ssh_config lines it does not honour', async () => {
    const warnings: string[] = [];
    await loadInventory(dir + 'good-alias-only.yaml', {
      sshConfigText: `${sshConfigText}\nMatch exec "true"\n  Port 1\n`,
      home,
      onWarning: (w) => warnings.push(w),
    });
    expect(warnings).toEqual(['ssh_config: Match blocks are not supported and were skipped: "Match exec "true""']);
  });

  it('without defaults, ssh_config fills what the file leaves out', async () => {
    const [b] = await loadInventory(dir + 'good-alias-only.yaml', { sshConfigText, home });
    expect(b?.ssh).toMatchObject({
      hostname: '10.0.0.12',
      user: 'from-ssh-config',
      port: 2200,
      identityFiles: ['/home/u/.ssh/server_b_key'],
    });
  });
});

describe('device selections in a YAML inventory', () => {
  it('a list of ids, a half-open range, and slots', async () => {
    const hosts = await loadInventory(dir + 'good-devices-forms.yaml', { home });
    expect(hosts.map((h) => [h.address, h.devices, h.slots])).toEqual([
      ['10.0.0.1', [0, 1], undefined],
      ['10.0.0.2', [2, 3], 1],
    ]);
  });
});

describe('hostfiles (DeepSpeed/MPI form)', () => {
  it('reads "host slots=N" lines, skipping comments and blank lines', async () => {
    const hosts = await loadInventory(dir + 'good-hostfile', { home });
    expect(hosts.map((h) => [h.name, h.address, h.slots, h.devices, h.ssh?.port])).toEqual([
      ['10.0.0.21', '10.0.0.21', 2, 'auto', 22],
      ['10.0.0.22', '10.0.0.22', 2, 'auto', 22],
    ]);
  });

  it('a single bare host name is a hostfile, not a YAML string', async () => {
    expect(parseHostfile('node1\n', 'f')).toEqual([{ address: 'node1', line: 1 }]);
  });

  it('hostfile names go through ssh_config', async () => {
    const [h] = await loadInventory(dir + 'good-hostfile-alias', {
      sshConfigText: 'Host node1\n  HostName 10.0.0.31\n  User u1\n',
      home,
    });
    expect(h).toMatchObject({ name: 'node1', address: '10.0.0.31', slots: 8, ssh: { user: 'u1' } });
  });
});

describe('spares', () => {
  it('are read with the same fields and defaults as hosts, apart from the hosts', async () => {
    const inv = await loadHostsFile(dir + 'good-spares.yaml', { home });
    expect(inv.hosts.map((h) => h.name)).toEqual(['server-a', 'server-b']);
    expect(inv.spares.map((h) => [h.name, h.address, h.ssh?.user, h.ssh?.port, h.devices])).toEqual([
      ['spare-1', '10.0.0.21', 'root', 22, 'auto'],
      ['spare-2', '10.0.0.22', 'trainer', 2222, [0, 1, 2, 3]],
    ]);
    expect(inv.spares[0]?.ssh?.identityFiles).toEqual([`${home}/.ssh/id_ed25519`]);
    // loadInventory is the hosts alone.
    expect((await loadInventory(dir + 'good-spares.yaml', { home })).map((h) => h.name)).toEqual([
      'server-a',
      'server-b',
    ]);
  });

  it('are none in a file without the list, and in a hostfile', async () => {
    expect(
      (await loadHostsFile(dir + 'good-full.yaml', { sshConfigText: readFileSync(dir + 'ssh_config', 'utf8'), home }))
        .spares,
    ).toEqual([]);
    expect((await loadHostsFile(dir + 'good-hostfile', { home })).spares).toEqual([]);
  });
});

describe('the launching machine without an inventory', () => {
  it('is local, at 127.0.0.1, named after this host, with every usable device', async () => {
    expect(localHost()).toEqual({ name: hostname(), address: '127.0.0.1', local: true, devices: 'auto' });
  });
});

// Every bad inventory names the file, the field (or line) and what was expected.
const bad: [file: string, message: RegExp][] = [
  [
    'bad-typo.yaml',
    /bad-typo\.yaml: invalid hosts file: hosts\[0\]: unknown key "adress" \(did you mean "address"\?\)/,
  ],
  [
    'bad-defaults-typo.yaml',
    /bad-defaults-typo\.yaml: invalid hosts file: defaults: unknown key "usr" \(did you mean "user"\?\)/,
  ],
  [
    'bad-port-string.yaml',
    /bad-port-string\.yaml: invalid hosts file: hosts\[0\]\.port: expected integer, got string "22"/,
  ],
  [
    'bad-port-range.yaml',
    /bad-port-range\.yaml: invalid hosts file: hosts\[1\]\.port: expected a number <= 65535, got number 70000/,
  ],
  ['bad-empty.yaml', /bad-empty\.yaml: invalid hosts file: hosts: expected at least 1 entry/],
  ['bad-no-hosts.yaml', /bad-no-hosts\.yaml: invalid hosts file: hosts: missing \(required\)/],
  [
    'bad-hosts-not-list.yaml',
    /bad-hosts-not-list\.yaml: invalid hosts file: hosts: expected array, got string "10\.0\.0\.1"/,
  ],
  [
    'bad-missing-address.yaml',
    /bad-missing-address\.yaml: invalid hosts file: hosts\[0\]\.address: missing \(required\)/,
  ],
  [
    'bad-duplicate.yaml',
    /bad-duplicate\.yaml: hosts\[1\]: "10\.0\.0\.1" is listed twice \(also hosts\[0\]\); expected each server once/,
  ],
  [
    'bad-devices.yaml',
    /bad-devices\.yaml: hosts\[0\]\.devices: device id 16 is out of range in "0-20"; expected "\[a,b\)"/,
  ],
  [
    'bad-name.yaml',
    /bad-name\.yaml: invalid hosts file: hosts\[0\]\.name: got string "my host", expected a short name of letters, digits/,
  ],
  [
    'bad-strict.yaml',
    /bad-strict\.yaml: invalid hosts file: hosts\[0\]\.strict_host_key_checking: expected one of "yes", "accept-new", "no", got string "maybe"/,
  ],
  [
    'bad-localhost-mixed.yaml',
    /bad-localhost-mixed\.yaml: mixes localhost with remote hosts.*expected this machine listed by its network address/,
  ],
  ['bad-syntax.yaml', /bad-syntax\.yaml:3:3: not valid YAML: /],
  [
    'bad-top-list.yaml',
    /bad-top-list\.yaml: not a hosts file: expected a YAML mapping with a `hosts:` list .* or "host slots=N" lines/,
  ],
  ['bad-hostfile-token', /bad-hostfile-token:3: unexpected "slot=2" after 10\.0\.0\.2; expected "host slots=N"/],
  ['bad-hostfile-slots', /bad-hostfile-slots:1: slots=x is not a whole number; expected "host slots=N"/],
  ['bad-hostfile-slots-zero', /bad-hostfile-slots-zero:1: slots=0 is out of range; expected 1 to 16 ranks per host/],
  ['bad-hostfile-colon', /bad-hostfile-colon:2: "node1:4" is not a host name or IP address; expected "host slots=N"/],
  ['bad-neither-ini', /bad-neither-ini:2: "\[servers\]" is not a host name or IP address; expected "host slots=N"/],
  [
    'bad-neither-prose.txt',
    /bad-neither-prose\.txt: invalid hosts file: \(top level\): unknown key "These are our servers"; expected one of defaults, hosts, spares/,
  ],
  [
    'bad-binary',
    /bad-binary: not a hosts file \(binary content\): expected a YAML mapping with a `hosts:` list or "host slots=N" lines/,
  ],
  [
    'bad-spare-duplicate.yaml',
    /bad-spare-duplicate\.yaml: spares\[0\]: "10\.0\.0\.12" is listed twice \(also hosts\[1\]\); expected each server once, as a host or as a spare/,
  ],
  [
    'bad-spare-typo.yaml',
    /bad-spare-typo\.yaml: invalid hosts file: spares\[0\]: unknown key "adress" \(did you mean "address"\?\)/,
  ],
  [
    'bad-spares-not-list.yaml',
    /bad-spares-not-list\.yaml: invalid hosts file: spares: expected array, got string "10\.0\.0\.21"/,
  ],
  ['bad-spare-localhost.yaml', /bad-spare-localhost\.yaml: mixes localhost with remote hosts or spares/],
  ['bad-hostfile-duplicate', /bad-hostfile-duplicate:2: "10\.0\.0\.1" is listed twice \(also line 1\)/],
  ['bad-hostfile-empty', /bad-hostfile-empty: no hosts listed; expected at least one host/],
  ['missing-file.yaml', /missing-file\.yaml: cannot read the hosts file: no such file or directory/],
];

describe('bad inventories are refused before anything starts', () => {
  it.each(bad)('%s', async (file, message) => {
    let caught: unknown;
    try {
      await loadInventory(dir + file, { home });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NpurunError);
    const err = caught as NpurunError;
    expect(err.message).toMatch(message);
    expect(err.message.startsWith(dir + file)).toBe(true);
    expect(err.kind).toBe('input');
    expect(err.exitCode).toBe(2);
  });

  it('a misspelt key is reported before the "missing" it causes, which follows in the details', async () => {
    try {
      await loadInventory(dir + 'bad-typo.yaml', { home });
      expect.unreachable();
    } catch (err) {
      expect((err as NpurunError).details).toEqual([`${dir}bad-typo.yaml: hosts[0].address: missing (required)`]);
    }
  });

  it('a bad Port in ssh_config names the inventory entry it was resolving', async () => {
    await expect(
      loadInventory(dir + 'good-hostfile', { sshConfigText: 'Host 10.0.0.22\n  Port none\n', home }),
    ).rejects.toThrow(/good-hostfile:4: ssh_config: Port "none" for host 10\.0\.0\.22 is not a port number/);
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadInventory } from '../src/inventory/inventory.js';
import {
  expandIdentityFile,
  openSshSource,
  ownParserSource,
  settingsFromSshG,
  strictnessOfSshG,
} from '../src/inventory/openssh-config.js';
import type { ResolvedSsh } from '../src/inventory/ssh-config.js';
import { findSshClient, sshConfigQuery } from '../src/transport/openssh.js';

// ssh expands ~ from the password database, so both readers use the real home here.
const home = homedir();
const ssh = findSshClient();
const dir = mkdtempSync(join(tmpdir(), 'npurun-openssh-'));
let n = 0;

/** The config written to a file, read by real `ssh -G -F file` and by npurun's own parser. */
function both(lines: string[]) {
  const file = join(dir, `config-${n++}`);
  const text = lines.join('\n') + '\n';
  writeFileSync(file, text);
  return { file, openssh: openSshSource(sshConfigQuery(ssh as string, file), home), own: ownParserSource(text, home) };
}

/** What both readers must agree on; identity files only where the config names some (ssh's default list is longer). */
function comparable(r: ResolvedSsh, withIdentities: boolean): Partial<ResolvedSsh> {
  const { identityFiles, ...rest } = r;
  return withIdentities ? { ...rest, identityFiles } : rest;
}

describe.skipIf(!ssh)('ssh -G and the own parser agree where the own parser supports the construct', () => {
  const cfg = both([
    'Host gpu-*',
    '  User trainer',
    '  IdentityFile ~/.ssh/%h_key',
    '  IdentityFile "/keys/with space/%r@%h"',
    'Host gpu-7 !gpu-8',
    '  Port 2222',
    'Host gpu-7',
    '  Port 3333',
    '  HostName 10.1.1.7',
    '  ProxyJump login',
    'Host *',
    '  StrictHostKeyChecking accept-new',
    '  UserKnownHostsFile ~/.ssh/a ~/.ssh/b',
    '  UserKnownHostsFile ~/.ssh/ignored',
    '  IdentityAgent none',
  ]);

  it.each([['gpu-7'], ['gpu-8'], ['gpu-1']])(
    'Host patterns, first value wins, tokens in IdentityFile: %s',
    async (alias) => {
      const [a, b] = await Promise.all([cfg.openssh.host(alias, {}), cfg.own.host(alias, {})]);
      expect(comparable(a, true)).toEqual(comparable(b, true));
      expect(a.user).toBe('trainer');
    },
  );

  it("a host no block names: defaults (ssh lists more default keys; the own parser's are among them)", async () => {
    const [a, b] = await Promise.all([cfg.openssh.host('other', {}), cfg.own.host('other', {})]);
    expect(comparable(a, false)).toEqual(comparable(b, false));
    expect(a).toMatchObject({
      hostname: 'other',
      port: 22,
      user: userInfo().username,
      strictHostKeyChecking: 'accept-new',
      useAgent: false,
    });
    for (const f of b.identityFiles) expect(a.identityFiles).toContain(f);
  });

  it('hosts-file user and port: ssh -G gets them as -l and -p, and they win in both', async () => {
    const explicit = { user: 'root', port: 22, proxyJump: 'other@jump' };
    const [a, b] = await Promise.all([cfg.openssh.host('gpu-7', explicit), cfg.own.host('gpu-7', explicit)]);
    expect(comparable(a, true)).toEqual(comparable(b, true));
    expect(a).toMatchObject({
      user: 'root',
      port: 22,
      proxyJump: 'other@jump',
      identityFiles: [join(home, '.ssh/10.1.1.7_key'), '/keys/with space/root@10.1.1.7'],
    });
  });

  it.each([
    ['yes', 'yes'],
    ['no', 'no'],
    ['accept-new', 'accept-new'],
    ['ask', 'yes'],
  ])('StrictHostKeyChecking %s means %s in both', async (value, expected) => {
    const c = both([`StrictHostKeyChecking ${value}`]);
    const [a, b] = await Promise.all([c.openssh.host('h', {}), c.own.host('h', {})]);
    expect(a.strictHostKeyChecking).toBe(expected);
    expect(b.strictHostKeyChecking).toBe(expected);
  });

  it('key=value, %h in HostName, %d %u %r %% in IdentityFile, an IdentityAgent path, ProxyJump none', async () => {
    const c = both([
      'Host n1',
      'HostName=%h.cluster',
      'User=ops',
      'IdentityFile %d/k/%u/%r/%h/100%%',
      'IdentityAgent ~/agent-%r.sock',
      'ProxyJump none',
    ]);
    const [a, b] = await Promise.all([c.openssh.host('n1', {}), c.own.host('n1', {})]);
    expect(comparable(a, true)).toEqual(comparable(b, true));
    expect(a).toMatchObject({
      hostname: 'n1.cluster',
      identityFiles: [`${home}/k/${userInfo().username}/ops/n1.cluster/100%`],
      identityAgent: `${home}/agent-ops.sock`,
      useAgent: true,
    });
    expect(a.proxyJump).toBeUndefined();
  });

  it('Include by absolute path, and inside a Host block only for the hosts that block matches', async () => {
    const inc = join(dir, 'cluster.conf');
    writeFileSync(inc, 'Host login gpu-1\n  User cluster\n  ProxyJump bastion\n');
    const c = both(['Host gpu-*', `  Include ${inc}`, 'Host *', '  User everyone']);
    for (const alias of ['gpu-1', 'login']) {
      const [a, b] = await Promise.all([c.openssh.host(alias, {}), c.own.host(alias, {})]);
      expect(comparable(a, false)).toEqual(comparable(b, false));
    }
    expect(await c.openssh.host('gpu-1', {})).toMatchObject({ user: 'cluster', proxyJump: 'bastion' });
    expect((await c.openssh.host('login', {})).user).toBe('everyone');
  });

  it('a ProxyJump hop "user@host:port" resolves alike', async () => {
    const c = both(['Host login', '  HostName 10.9.0.1', '  User jumper', '  Port 2201']);
    for (const spec of ['login', 'me@login:22', 'ssh://me@login:2022']) {
      const [a, b] = await Promise.all([c.openssh.jump(spec), c.own.jump(spec)]);
      expect(comparable(a, false)).toEqual(comparable(b, false));
    }
    expect(await c.openssh.jump('me@login:22')).toMatchObject({ hostname: '10.9.0.1', user: 'me', port: 22 });
  });
});

describe.skipIf(!ssh)('ssh -G handles what the own parser does not', () => {
  it('Match host and Match user (the own parser skips them with a warning)', async () => {
    const lines = [
      'Match host gpu-*',
      '  Port 2200',
      'Match user alice',
      '  IdentityFile ~/.ssh/alice_key',
      'Host *',
      '  Port 22',
    ];
    const warnings: string[] = [];
    const c = both(lines);
    const own = ownParserSource(lines.join('\n'), home, (w) => warnings.push(w));
    expect((await c.openssh.host('gpu-3', {})).port).toBe(2200);
    expect((await own.host('gpu-3', {})).port).toBe(22);
    expect(warnings).toEqual([
      'ssh_config: Match blocks are not supported and were skipped: "Match host gpu-*"',
      'ssh_config: Match blocks are not supported and were skipped: "Match user alice"',
    ]);
    // The hosts file's user reaches ssh as -l, so `Match user` sees it.
    expect((await c.openssh.host('n1', { user: 'alice' })).identityFiles).toEqual([join(home, '.ssh/alice_key')]);
    expect((await c.openssh.host('n1', { user: 'bob' })).identityFiles).not.toContain(join(home, '.ssh/alice_key'));
  });

  it('tokens the own parser leaves as written: %n %p %l in IdentityFile, %h %p in UserKnownHostsFile', async () => {
    const c = both([
      'Host n1',
      '  HostName 10.0.0.9',
      '  Port 2022',
      '  IdentityFile ~/.ssh/%n_%p',
      '  UserKnownHostsFile ~/.ssh/kh_%h_%p',
    ]);
    const a = await c.openssh.host('n1', {});
    expect(a.identityFiles).toEqual([join(home, '.ssh/n1_2022')]);
    expect(a.knownHostsFiles).toEqual([join(home, '.ssh/kh_10.0.0.9_2022')]);
    expect((await c.own.host('n1', {})).identityFiles).toEqual([join(home, '.ssh/%n_%p')]);
  });

  it('ProxyJump a,b: the chain as written, each hop resolved through ssh -G (its own Match too)', async () => {
    const c = both([
      'Host target',
      '  ProxyJump a,jumper@b:2201',
      'Match host a',
      '  HostName 10.0.0.1',
      '  User hop1',
      'Host b',
      '  HostName 10.0.0.2',
    ]);
    expect((await c.openssh.host('target', {})).proxyJump).toBe('a,jumper@b:2201');
    expect(await c.openssh.jump('a')).toMatchObject({ hostname: '10.0.0.1', user: 'hop1', port: 22 });
    expect(await c.openssh.jump('jumper@b:2201')).toMatchObject({ hostname: '10.0.0.2', user: 'jumper', port: 2201 });
    expect((await c.own.jump('a')).hostname).toBe('a');
  });

  it("IdentityAgent: none turns the agent off, SSH_AUTH_SOCK keeps the environment's, a path (with Match) is passed on", async () => {
    const c = both([
      'Host off',
      '  IdentityAgent none',
      'Host env',
      '  IdentityAgent SSH_AUTH_SOCK',
      'Match user ops',
      '  IdentityAgent ~/.ssh/ops-agent.sock',
    ]);
    expect(await c.openssh.host('off', {})).toMatchObject({ useAgent: false });
    expect((await c.openssh.host('off', {})).identityAgent).toBeUndefined();
    const env = await c.openssh.host('env', {});
    expect(env.useAgent && env.identityAgent === undefined).toBe(true);
    expect(await c.openssh.host('x', { user: 'ops' })).toMatchObject({
      useAgent: true,
      identityAgent: join(home, '.ssh/ops-agent.sock'),
    });
  });

  it('hosts asked together are answered each with its own settings, across batches of one shell each', async () => {
    const c = both(['Match host h7', '  Port 2207', 'Host h*', '  HostName %h.cluster', '  User train']);
    const names = Array.from({ length: 70 }, (_, i) => `h${i}`); // 3 batches of SSH_G_BATCH = 32
    const got = await Promise.all(names.map((h) => c.openssh.host(h, h === 'h9' ? { user: 'ops', port: 2209 } : {})));
    expect(got.map((g) => [g.hostname, g.user, g.port])).toEqual(
      names.map((h) => [`${h}.cluster`, h === 'h9' ? 'ops' : 'train', h === 'h7' ? 2207 : h === 'h9' ? 2209 : 22]),
    );
  });

  it('one host ssh refuses fails alone; the others of its batch are answered', async () => {
    const c = both(['Host *', '  User train']);
    const [bad, good] = await Promise.allSettled([c.openssh.host('-oProxyCommand=x', {}), c.openssh.host('ok', {})]);
    expect(good).toMatchObject({ status: 'fulfilled', value: { hostname: 'ok', user: 'train' } });
    expect(bad.status).toBe('rejected');
  });

  it('a config ssh refuses is bad input naming the file and line', async () => {
    const c = both(['Host x', '  Bogus 1']);
    await expect(c.openssh.host('x', {})).rejects.toThrow(
      /config-\d+: ssh -G x refused the SSH configuration: .*line 2: Bad configuration option: bogus/,
    );
  });
});

describe('reading ssh -G output', () => {
  it('maps StrictHostKeyChecking true/false/ask/accept-new to yes/no/yes/accept-new', () => {
    expect(['true', 'false', 'ask', 'accept-new', undefined].map(strictnessOfSshG)).toEqual([
      'yes',
      'no',
      'yes',
      'accept-new',
      'yes',
    ]);
  });

  it('keeps every identityfile in order and spaces inside values', () => {
    const out =
      'hostname 10.0.0.1\nuser u\nport 2200\nidentityfile ~/a\nidentityfile /k/with space\nuserknownhostsfile /x /y\nstricthostkeychecking false\nproxyjump a,b\nidentityagent /s.sock\n';
    expect(settingsFromSshG('n', out, '/home/u')).toEqual({
      hostname: '10.0.0.1',
      user: 'u',
      port: 2200,
      identityFiles: ['/home/u/a', '/k/with space'],
      knownHostsFiles: ['/x', '/y'],
      strictHostKeyChecking: 'no',
      proxyJump: 'a,b',
      useAgent: true,
      identityAgent: '/s.sock',
    });
  });

  it('expands IdentityFile tokens as ssh does when it loads keys; %C stays', () => {
    expect(
      expandIdentityFile('~/.ssh/%r@%h:%p-%n-%%-%C', { home: '/h', alias: 'a', hostname: 'x', user: 'u', port: 22 }),
    ).toBe('/h/.ssh/u@x:22-a-%-%C');
  });
});

describe.skipIf(!ssh)('cost of ssh -G for a large inventory', () => {
  it('512 hosts resolve through ssh -G, 16 at a time, each with its own Match answer', async () => {
    const c = both(['Match host gpu-*', '  User trainer', 'Host gpu-*', '  HostName 10.8.%h']);
    const file = join(dir, 'hosts-512');
    writeFileSync(file, Array.from({ length: 512 }, (_, i) => `gpu-${i} slots=8`).join('\n') + '\n');
    const t0 = performance.now();
    const hosts = await loadInventory(file, { settings: c.openssh, home });
    const ms = performance.now() - t0;
    process.stderr.write(
      `ssh -G for 512 hosts, 16 at a time: ${Math.round(ms)} ms (${(ms / 512).toFixed(1)} ms per host)\n`,
    );
    expect(hosts).toHaveLength(512);
    expect(hosts.every((h, i) => h.ssh?.user === 'trainer' && h.ssh.hostname === `10.8.gpu-${i}`)).toBe(true);
  }, 120_000);
});

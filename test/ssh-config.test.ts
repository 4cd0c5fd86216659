import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  hostMatches,
  parseSshConfig,
  resolveJumpSpec,
  resolveSshHost,
  splitConfigArgs,
} from '../src/inventory/ssh-config.js';

const home = '/home/u';
const config = (lines: string[]) => parseSshConfig(lines.join('\n'), home);

describe('ssh_config Host patterns', () => {
  it('matches *, ? and several patterns per line; a matching !negation excludes the block', () => {
    expect(hostMatches(['gpu-*'], 'gpu-12')).toBe(true);
    expect(hostMatches(['gpu-?'], 'gpu-12')).toBe(false);
    expect(hostMatches(['gpu-?'], 'gpu-1')).toBe(true);
    expect(hostMatches(['login', 'gpu-*'], 'login')).toBe(true);
    expect(hostMatches(['gpu-*', '!gpu-8'], 'gpu-8')).toBe(false);
    expect(hostMatches(['gpu-*', '!gpu-8'], 'gpu-7')).toBe(true);
    // A block of negations alone never matches, as in OpenSSH.
    expect(hostMatches(['!gpu-8'], 'gpu-7')).toBe(false);
    // Dots are literal, not regex wildcards.
    expect(hostMatches(['10.0.0.1'], '10x0x0x1')).toBe(false);
  });

  it('matches host names case-insensitively, as ssh does', () => {
    expect(resolveSshHost('GPU-1', config(['Host gpu-1', '  Port 2200']), {}, home).port).toBe(2200);
  });
});

describe('ssh_config resolution', () => {
  const cfg = config([
    'Host gpu-*',
    '  User trainer',
    '  IdentityFile ~/.ssh/%h_key',
    '  IdentityFile "/keys/with space/%r@%h"   # second identity, quoted',
    '',
    'Host gpu-7 !gpu-8',
    '  Port 2222',
    '',
    'Host gpu-7',
    '  Port 3333',
    '  HostName 10.1.1.7',
    '  ProxyJump login',
    '',
    'Match user x',
    '  Port 1',
    '',
    'Host *',
    '  StrictHostKeyChecking accept-new',
    '  UserKnownHostsFile ~/.ssh/a ~/.ssh/b',
    '  UserKnownHostsFile ~/.ssh/ignored',
    '  IdentityAgent none',
  ]);

  it('takes the first value obtained, in file order, across blocks', () => {
    const r = resolveSshHost('gpu-7', cfg, {}, home);
    expect(r).toEqual({
      hostname: '10.1.1.7',
      user: 'trainer',
      port: 2222,
      identityFiles: ['/home/u/.ssh/10.1.1.7_key', '/keys/with space/trainer@10.1.1.7'],
      knownHostsFiles: ['/home/u/.ssh/a', '/home/u/.ssh/b'],
      strictHostKeyChecking: 'accept-new',
      proxyJump: 'login',
      useAgent: false,
    });
  });

  it('a negated pattern keeps its block away from that host', () => {
    expect(resolveSshHost('gpu-8', cfg, {}, home).port).toBe(22);
  });

  it('skips Match blocks with a warning', () => {
    expect(resolveSshHost('other', cfg, {}, home).port).toBe(22);
    expect(cfg.warnings).toEqual(['Match blocks are not supported and were skipped: "Match user x"']);
  });

  it('inventory values win over ssh_config', () => {
    expect(resolveSshHost('gpu-7', cfg, { port: 22, user: 'root', proxyJump: 'other@jump' }, home)).toMatchObject({
      port: 22,
      user: 'root',
      proxyJump: 'other@jump',
      hostname: '10.1.1.7',
    });
  });

  it('without a config: login name, port 22, ~/.ssh keys and known_hosts, strict checking, the agent', () => {
    expect(resolveSshHost('10.0.0.5', undefined, {}, home)).toEqual({
      hostname: '10.0.0.5',
      user: userInfo().username,
      port: 22,
      identityFiles: ['/home/u/.ssh/id_ed25519', '/home/u/.ssh/id_ecdsa', '/home/u/.ssh/id_rsa'],
      knownHostsFiles: ['/home/u/.ssh/known_hosts', '/home/u/.ssh/known_hosts2'],
      strictHostKeyChecking: 'yes',
      useAgent: true,
    });
  });

  it('HostName %h, the %d %u %r %% tokens, key=value syntax and ~ in IdentityFile', () => {
    const r = resolveSshHost(
      'n1',
      config(['Host n1', 'HostName=%h.cluster', 'User=ops', 'IdentityFile %d/k/%u/%r/%h/100%%']),
      {},
      home,
    );
    expect(r.hostname).toBe('n1.cluster');
    expect(r.identityFiles).toEqual([`/home/u/k/${userInfo().username}/ops/n1.cluster/100%`]);
  });

  it.each([
    ['yes', 'yes'],
    ['no', 'no'],
    ['accept-new', 'accept-new'],
    ['ask', 'yes'],
    ['ACCEPT-NEW', 'accept-new'],
  ])('StrictHostKeyChecking %s means %s', (value, expected) => {
    expect(resolveSshHost('h', config([`StrictHostKeyChecking ${value}`]), {}, home).strictHostKeyChecking).toBe(
      expected,
    );
  });

  it('IdentityAgent SSH_AUTH_SOCK or a path keeps the agent; ProxyJump none means no jump', () => {
    expect(resolveSshHost('h', config(['IdentityAgent SSH_AUTH_SOCK', 'ProxyJump none']), {}, home)).toMatchObject({
      useAgent: true,
    });
    expect(resolveSshHost('h', config(['ProxyJump none']), {}, home).proxyJump).toBeUndefined();
  });

  it('refuses a Port that is not a port number, naming the host', () => {
    expect(() => resolveSshHost('h', config(['Host h', 'Port ssh']), {}, home)).toThrow(
      /ssh_config: Port "ssh" for host h is not a port number; expected 1 to 65535/,
    );
  });

  it('arguments: quotes group words, an unquoted # ends the line', () => {
    expect(splitConfigArgs('a "b c" d # e f')).toEqual(['a', 'b c', 'd']);
    expect(splitConfigArgs('"x # y"')).toEqual(['x # y']);
  });

  it('a ProxyJump hop is resolved like a host, its own user and port winning', () => {
    const c = config(['Host login', '  HostName 10.9.0.1', '  User jumper', '  Port 2201']);
    expect(resolveJumpSpec('login', c, home)).toMatchObject({ hostname: '10.9.0.1', user: 'jumper', port: 2201 });
    expect(resolveJumpSpec('me@login:22', c, home)).toMatchObject({ hostname: '10.9.0.1', user: 'me', port: 22 });
    expect(resolveJumpSpec('user@host:2222', undefined, home)).toMatchObject({
      hostname: 'host',
      user: 'user',
      port: 2222,
    });
    expect(resolveJumpSpec('[10.0.0.1]:2200', undefined, home)).toMatchObject({ hostname: '10.0.0.1', port: 2200 });
    expect(() => resolveJumpSpec('a@b@c:x', undefined, home)).toThrow(
      /ProxyJump: "a@b@c:x" is not \[user@\]host\[:port\]/,
    );
  });
});

describe('ssh_config Include', () => {
  const fixtureHome = fileURLToPath(new URL('./fixtures/inventory/home', import.meta.url));
  const cfg = parseSshConfig(readFileSync(`${fixtureHome}/.ssh/config`, 'utf8'), fixtureHome);

  it('reads globbed files relative to ~/.ssh in name order, inline where the Include stands', () => {
    expect(resolveSshHost('gpu-1', cfg, {}, fixtureHome)).toMatchObject({
      hostname: '10.3.0.1',
      user: 'from-include',
      port: 3033,
      identityFiles: [`${fixtureHome}/.ssh/cluster_key`],
      proxyJump: 'bastion',
    });
  });

  it('lines after an Include still belong to the including Host block', () => {
    expect(resolveSshHost('gpu-2', cfg, {}, fixtureHome)).toMatchObject({
      hostname: 'gpu-2',
      port: 3033,
      proxyJump: 'bastion',
    });
    expect(resolveSshHost('login', cfg, {}, fixtureHome).proxyJump).toBeUndefined();
  });

  it('files the glob does not match are not read; other hosts fall through to Host *', () => {
    expect(resolveSshHost('login', cfg, {}, fixtureHome)).toMatchObject({
      hostname: 'login',
      user: 'fallback',
      port: 22,
    });
  });
});

describe('ssh_config Include in a home of its own', () => {
  /** A fresh home whose ~/.ssh holds `files` (path relative to .ssh -> text). */
  function homeWith(files: Record<string, string>): string {
    const h = mkdtempSync(join(tmpdir(), 'npurun-home-'));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(h, '.ssh', path, '..'), { recursive: true });
      writeFileSync(join(h, '.ssh', path), text);
    }
    return h;
  }
  const resolve = (h: string, alias: string) =>
    resolveSshHost(alias, parseSshConfig(readFileSync(join(h, '.ssh', 'config'), 'utf8'), h), {}, h);

  it('a glob, ~/ and absolute paths; files read in name order, a missing file is no error', () => {
    const h = homeWith({
      config: 'Include conf.d/*.conf ~/.ssh/extra missing.conf\nHost *\n  Port 2000\n',
      'conf.d/b.conf': 'Host n1\n  User b-user\n  Port 2002\n',
      'conf.d/a.conf': 'Host n1\n  User a-user\n',
      'conf.d/skip.txt': 'Host n1\n  HostName 10.9.9.9\n',
      extra: 'Host n1\n  HostName 10.1.0.1\n  IdentityFile %d/.ssh/%r@%h\n',
    });
    expect(resolve(h, 'n1')).toMatchObject({
      hostname: '10.1.0.1',
      user: 'a-user',
      port: 2002,
      identityFiles: [`${h}/.ssh/a-user@10.1.0.1`],
    });
    expect(resolve(h, 'other').port).toBe(2000);
    // An absolute path is read where it is, not under ~/.ssh.
    const abs = homeWith({ config: 'Host *\n  User x\n' });
    const cfg = parseSshConfig(`Include ${abs}/.ssh/config\n`, h);
    expect(resolveSshHost('anything', cfg, {}, h).user).toBe('x');
  });

  it('Host blocks of a file included inside a Host block apply only to hosts that block matches', () => {
    const h = homeWith({
      config: 'Host gpu-*\n  Include cluster.conf\nHost *\n  User everyone\n',
      'cluster.conf': 'Host login gpu-1\n  User cluster\n  ProxyJump bastion\n',
    });
    expect(resolve(h, 'gpu-1')).toMatchObject({ user: 'cluster', proxyJump: 'bastion' });
    // OpenSSH never activates them for a host outside gpu-*, even when their own pattern matches.
    expect(resolve(h, 'login').user).toBe('everyone');
    expect(resolve(h, 'login').proxyJump).toBeUndefined();
  });

  it('a file including itself stops at 8 levels with a warning', () => {
    const h = homeWith({ config: 'Include config\nHost x\n  Port 2222\n' });
    const cfg = parseSshConfig(readFileSync(join(h, '.ssh', 'config'), 'utf8'), h);
    expect(cfg.warnings).toEqual(['Include nested more than 8 deep was skipped: "Include config"']);
    expect(resolveSshHost('x', cfg, {}, h).port).toBe(2222);
  });

  it('a Match block in an included file is skipped with a warning; the including file goes on', () => {
    const h = homeWith({
      config: 'Include m.conf\nHost y\n  User after\n',
      'm.conf': 'Match host y\n  User matched\n',
    });
    const cfg = parseSshConfig(readFileSync(join(h, '.ssh', 'config'), 'utf8'), h);
    expect(cfg.warnings).toEqual(['Match blocks are not supported and were skipped: "Match host y"']);
    expect(resolveSshHost('y', cfg, {}, h).user).toBe('after');
  });
});

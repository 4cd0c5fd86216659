import { afterEach, describe, expect, it } from 'vitest';
import { hostSettings, probeHosts, withHosts } from '../src/launch/hosts.js';
import { NpurunError } from '../src/errors.js';
import { localHost } from '../src/inventory/inventory.js';
import type { HostSpec } from '../src/inventory/types.js';
import { findSshClient } from '../src/transport/openssh.js';

/** A remote host npurun cannot log in to (no identity, no agent): refused before any packet is sent. */
const refusing: HostSpec = {
  name: 'nobody',
  address: '127.0.0.2',
  local: false,
  devices: 'auto',
  ssh: {
    hostname: '127.0.0.2',
    port: 1,
    user: 'x',
    identityFiles: [],
    knownHostsFiles: [],
    strictHostKeyChecking: 'yes',
    useAgent: false,
  },
};

describe('withHosts: connect all, run fn on each, close them all', () => {
  it("runs fn through each host's agent; a host that cannot be reached is an exit-3 error in its own result", async () => {
    const here = localHost();
    const closed: string[] = [];
    const results = await withHosts([refusing, here], { fanout: 2 }, async (t, host) => {
      const close = t.close.bind(t);
      t.close = async () => {
        closed.push(host.name);
        return close();
      };
      return (await t.exec('echo $((6*7))')).stdout.trim();
    });
    expect(results.map((r) => r.host.name)).toEqual(['nobody', here.name]);
    expect(results[1]?.value).toBe('42');
    expect(results[1]?.error).toBeUndefined();
    expect(results[0]?.error?.kind).toBe('unreachable');
    expect(results[0]?.error?.exitCode).toBe(3);
    expect(results[0]?.error?.message).toMatch(/^host nobody: /);
    expect(results[0]?.error?.message).toMatch(/no usable SSH identity/);
    expect(closed).toEqual([here.name]);
  });

  it("an error thrown by fn on one host is that host's result; the others still run", async () => {
    const a = localHost();
    const b = { ...localHost(), name: 'second' };
    const results = await withHosts([a, b], {}, async (t, host) => {
      if (host.name === 'second') throw new Error('boom');
      return (await t.exec('true')).code;
    });
    expect(results[0]?.value).toBe(0);
    expect(results[1]?.error?.message).toBe('host second: boom');
  });
});

describe('probeHosts: devices of every host, or one error listing each host that failed', () => {
  it('this machine probes fine (no NPUs is a fact, not a failure); the unreachable host fails the whole probe with exit 3, named', async () => {
    const err = await probeHosts([localHost(), refusing], {}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NpurunError);
    const e = err as NpurunError;
    expect(e.message).toBe('1 of 2 hosts could not be probed');
    expect(e.exitCode).toBe(3);
    expect(e.kind).toBe('unreachable');
    expect((await probeHosts([localHost()], {}))[localHost().name]?.devices).toBeDefined();
    expect(e.details).toEqual([expect.stringMatching(/^nobody \(127\.0\.0\.2\): .*no usable SSH identity/)]);
  });
});

describe('where SSH settings come from', () => {
  const path = process.env.PATH;
  afterEach(() => {
    process.env.PATH = path;
  });

  it('ssh -G where an ssh client is on PATH; else the own parser, said once', () => {
    if (findSshClient()) expect(hostSettings(undefined, () => {}).kind).toBe('openssh');
    process.env.PATH = '/nonexistent';
    const warnings: string[] = [];
    expect(hostSettings(undefined, (w) => warnings.push(w)).kind).toBe('own-parser');
    expect(hostSettings(undefined, (w) => warnings.push(w)).kind).toBe('own-parser');
    expect(warnings).toEqual([
      expect.stringMatching(/^no ssh client on PATH: ssh_config is read by npurun's own parser/),
    ]);
  });
});

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';
import { NpurunError } from '../src/errors.js';
import { hostLossPolicy, hostsForRestart, placeHosts, type RestartHostsOptions } from '../src/launch/host-loss.js';
import type { PreflightResult } from '../src/launch/preflight.js';
import { resolveJob } from '../src/plan/job.js';
import type { HostSpec, JobSpec } from '../src/plan/types.js';
import type { HostTransport } from '../src/transport/types.js';

const host = (name: string): HostSpec => ({
  name,
  address: `10.0.0.${name.replace(/\D/g, '')}`,
  local: false,
  devices: 'auto',
});
const job = (extra: Partial<JobSpec> = {}): JobSpec => ({
  ...resolveJob(undefined, { command: ['x'], env: [] }, '/w'),
  ...extra,
});
const ckpt = {
  unit: 'epoch' as const,
  keepMax: 3,
  masterOnly: false,
  dir: 'ckpt',
  pattern: '{prefix}-{epoch}_{step}.ckpt',
};

function refused(f: () => unknown): NpurunError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(NpurunError);
    expect((err as NpurunError).exitCode).toBe(2);
    return err as NpurunError;
  }
  throw new Error('not refused');
}

describe('--on-host-loss: the policy, checked before anything starts', () => {
  it('defaults to spare when the hosts file lists spares, else wait; an explicit one wins', () => {
    expect(hostLossPolicy(job(), [host('s9')])).toBe('spare');
    expect(hostLossPolicy(job(), [])).toBe('wait');
    expect(hostLossPolicy(job({ onHostLoss: 'wait' }), [host('s9')])).toBe('wait');
    expect(hostLossPolicy(job({ onHostLoss: 'shrink' }), [])).toBe('shrink');
  });

  it('refuses spare without spares, a host change with a given rank table, shrink of per-rank checkpoints without resume_map', () => {
    expect(refused(() => hostLossPolicy(job({ onHostLoss: 'spare' }), [])).message).toMatch(
      /--on-host-loss \(job on_host_loss\): spare: the hosts file lists no spares; expected a `spares:` list/,
    );
    expect(refused(() => hostLossPolicy(job({ rankTableFile: '/t.json' }), [host('s9')])).message).toMatch(
      /spare: the given rank table \/t\.json names every server.*expected wait/,
    );
    expect(refused(() => hostLossPolicy(job({ onHostLoss: 'shrink', checkpoint: ckpt }), [])).message).toMatch(
      /shrink: every rank saves a checkpoint of its own.*expected `resume_map: rank0` or `same-rank`/,
    );
    // What makes shrink sound: one saving rank, or a resume_map.
    expect(hostLossPolicy(job({ onHostLoss: 'shrink', checkpoint: { ...ckpt, masterOnly: true } }), [])).toBe('shrink');
    expect(hostLossPolicy(job({ onHostLoss: 'shrink', checkpoint: ckpt, resumeMap: 'rank0' }), [])).toBe('shrink');
    expect(hostLossPolicy(job({ rankTableFile: '/t.json' }), [])).toBe('wait');
  });

  it('on_host_loss in a job file and --on-host-loss are read, a wrong value named', () => {
    expect(resolveJob(undefined, { command: ['x'], env: [], onHostLoss: 'shrink' }, '/w').onHostLoss).toBe('shrink');
    expect(
      refused(() => resolveJob(undefined, { command: ['x'], env: [], onHostLoss: 'spares' }, '/w')).message,
    ).toMatch(/--on-host-loss: "spares" is not one of wait, spare, shrink/);
  });
});

describe('placeHosts', () => {
  const hosts = ['h1', 'h2', 'h3'].map(host);
  it('spare: the spare takes the lost host place (rank order kept)', () => {
    const r = placeHosts(hosts, new Set(['h2']), 'spare', () => host('s9'));
    expect(r.hosts.map((h) => h.name)).toEqual(['h1', 's9', 'h3']);
    expect(r.replaced).toEqual([{ host: 'h2', by: 's9' }]);
    expect(r.missing).toEqual([]);
  });
  it('spare with none left, and wait: the lost host is still missing', () => {
    expect(placeHosts(hosts, new Set(['h2']), 'spare', () => undefined).missing).toEqual(['h2']);
    expect(placeHosts(hosts, new Set(['h1', 'h3']), 'wait', () => host('s9')).missing).toEqual(['h1', 'h3']);
  });
  it('shrink: the others go on, unless none is left', () => {
    const r = placeHosts(hosts, new Set(['h1']), 'shrink', () => undefined);
    expect(r.hosts.map((h) => h.name)).toEqual(['h2', 'h3']);
    expect(r.dropped).toEqual(['h1']);
    expect(placeHosts(hosts, new Set(['h1', 'h2', 'h3']), 'shrink', () => undefined).missing).toEqual([
      'h1',
      'h2',
      'h3',
    ]);
  });
});

describe('hostsForRestart (hosts probed through an injected preflight)', () => {
  const closed: string[] = [];
  const transport = (name: string) => ({ close: async () => void closed.push(name) }) as unknown as HostTransport;
  const options = (down: Set<string>, extra: Partial<RestartHostsOptions>): RestartHostsOptions => ({
    hosts: ['h1', 'h2'].map(host),
    spares: [],
    policy: 'wait',
    waitSeconds: 0,
    fanout: 4,
    probe: async (h): Promise<PreflightResult> => {
      if (down.has(h.name)) throw new Error('connect ECONNREFUSED');
      return { transports: new Map([[h.name, transport(h.name)]]), facts: {} };
    },
    sleep: async () => true,
    say: () => {},
    ...extra,
  });

  it('spare: skips a spare that fails too, takes the next, and hands back connections of exactly the new hosts', async () => {
    const said: string[] = [];
    const spares = [host('s8'), host('s9')];
    const r = await hostsForRestart(
      options(new Set(['h2', 's8']), { policy: 'spare', spares, say: (l) => said.push(l) }),
    );
    expect(r && 'hosts' in r).toBe(true);
    if (!r || !('hosts' in r)) return;
    expect(r.hosts.map((h) => h.name)).toEqual(['h1', 's9']);
    expect(r.replaced).toEqual([{ host: 'h2', by: 's9' }]);
    expect([...r.transports.keys()].sort()).toEqual(['h1', 's9']);
    expect(spares).toEqual([]);
    expect(said.join('\n')).toMatch(/spare s8 \(10\.0\.0\.8\) is not usable either: connect ECONNREFUSED/);
  });

  it('spare: two lost hosts get the first two working spares, in order, probed together', async () => {
    const probedAt: string[] = [];
    const spares = ['s7', 's8', 's9'].map(host);
    const base = options(new Set(['h1', 'h2', 's7']), { policy: 'spare', spares });
    const r = await hostsForRestart({ ...base, probe: (h) => (probedAt.push(h.name), base.probe(h)) });
    expect(r && 'hosts' in r && r.hosts.map((h) => h.name)).toEqual(['s8', 's9']);
    expect(r && 'replaced' in r && r.replaced).toEqual([
      { host: 'h1', by: 's8' },
      { host: 'h2', by: 's9' },
    ]);
    // Two spares at once for two lost hosts, then one more for the one whose spare failed.
    expect(probedAt).toEqual(['h1', 'h2', 's7', 's8', 's9']);
  });

  it('wait: probes again until the deadline, then names the host and why; every connection closed', async () => {
    closed.length = 0;
    const said: string[] = [];
    let sleeps = 0;
    const r = await hostsForRestart(
      options(new Set(['h2']), {
        waitSeconds: 2,
        say: (l) => said.push(l),
        sleep: async (s) => {
          sleeps++;
          await new Promise((res) => setTimeout(res, s * 1000));
          return true;
        },
      }),
    );
    expect(r).toEqual({ lost: ['h2'], why: ['h2 (10.0.0.2): connect ECONNREFUSED'] });
    expect(sleeps).toBeGreaterThanOrEqual(1);
    expect(said[0]).toMatch(
      /restart: not every host is ready \(try 1\); waiting for them, \d s left\n {2}h2 \(10\.0\.0\.2\)/,
    );
    expect(closed.filter((n) => n === 'h1').length).toBe(sleeps + 1);
  });

  it('wait: a host back within the wait is used; Ctrl-C while waiting ends it', async () => {
    const down = new Set(['h2']);
    const back = await hostsForRestart(
      options(down, {
        waitSeconds: 30,
        sleep: async () => {
          down.clear();
          return true;
        },
      }),
    );
    expect(back && 'hosts' in back && back.hosts.map((h) => h.name)).toEqual(['h1', 'h2']);
    expect(
      await hostsForRestart(options(new Set(['h1']), { waitSeconds: 30, sleep: async () => false })),
    ).toBeUndefined();
  });

  it('shrink: goes on without the lost host at once', async () => {
    const r = await hostsForRestart(options(new Set(['h1']), { policy: 'shrink' }));
    expect(r && 'hosts' in r && [r.hosts.map((h) => h.name), r.dropped]).toEqual([['h2'], ['h1']]);
  });
});

describe('npurun launch refuses a host-loss policy it could not follow, before anything starts', () => {
  beforeAll(() => ensureBuilt(), 120_000);
  const cwd = mkdtempSync(join(tmpdir(), 'npurun-host-loss-cli-'));
  const launch = (flags: string[]) =>
    spawnSync(
      process.execPath,
      [NPURUN_BIN, 'launch', '--simulate', '2', '--profile', 'torch', ...flags, '--', 'true'],
      { encoding: 'utf8', cwd },
    );

  it('spare without spares, and an unknown policy: exit 2, one line, no run folder', () => {
    const spare = launch(['--on-host-loss', 'spare']);
    expect(spare.status, spare.stderr).toBe(2);
    expect(spare.stderr).toMatch(/--on-host-loss \(job on_host_loss\): spare: the hosts file lists no spares/);
    const runs = join(cwd, 'runs');
    expect(existsSync(runs) ? readdirSync(runs) : []).toEqual([]);
    const bogus = launch(['--on-host-loss', 'elastic']);
    expect(bogus.status).toBe(2);
    expect(bogus.stderr).toMatch(/--on-host-loss: "elastic" is not one of wait, spare, shrink/);
    expect(launch(['--on-host-loss', 'wait']).status).toBe(0);
  });

  it('--help says what each policy does', () => {
    const help = spawnSync(process.execPath, [NPURUN_BIN, 'launch', '--help'], { encoding: 'utf8' }).stdout;
    expect(help).toMatch(/--on-host-loss WHAT[\s\S]*spare \(the first working host of the hosts file's[\s\S]*shrink/);
  });
});

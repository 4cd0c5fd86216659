import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostSpec } from '../src/plan/types.js';
import { supervise, type SupervisorEvent } from '../src/supervise/supervisor.js';
import { LocalTransport } from '../src/transport/local.js';
import { manualPlan, MemorySink } from './helpers/plan.js';

const host: HostSpec = { name: 'local', address: '127.0.0.1', local: true, devices: 'auto' };
const base = mkdtempSync(join(tmpdir(), 'npurun-sup-'));

describe('supervisor with local ranks', () => {
  it('all ranks succeed: exit 0 and every line of output collected', async () => {
    const plan = manualPlan(
      'ok',
      [host],
      [0, 1, 2].map((rank) => ({
        rank,
        host: 'local',
        deviceId: rank,
        cwd: join(base, `ok${rank}`),
        argv: ['sh', '-c', `echo hello from ${rank}`],
        env: {},
      })),
    );
    const sink = new MemorySink();
    const t = await LocalTransport.connect(host);
    const out = await supervise(plan, new Map([['local', t]]), { graceSeconds: 2, orphanGraceSeconds: 1, sink });
    await t.close();
    expect(out.status).toBe('succeeded');
    expect(out.exitCode).toBe(0);
    expect([0, 1, 2].map((r) => sink.text.get(`${r}:stdout`))).toEqual([
      'hello from 0\n',
      'hello from 1\n',
      'hello from 2\n',
    ]);
  });

  it('the first failing rank is the root cause, the others are stopped quickly', async () => {
    const argv = (rank: number) => (rank === 2 ? ['sh', '-c', 'sleep 0.3; echo dying >&2; exit 7'] : ['sleep', '60']);
    const plan = manualPlan(
      'fail',
      [host],
      [0, 1, 2, 3].map((rank) => ({
        rank,
        host: 'local',
        deviceId: rank,
        cwd: join(base, `f${rank}`),
        argv: argv(rank),
        env: {},
      })),
    );
    const events: SupervisorEvent[] = [];
    const t = await LocalTransport.connect(host);
    const started = Date.now();
    const out = await supervise(plan, new Map([['local', t]]), {
      graceSeconds: 5,
      orphanGraceSeconds: 1,
      sink: new MemorySink(),
      onEvent: (e) => events.push(e),
    });
    await t.close();
    // Measured between the recorded exits (not the harness's wall time, which 2 busy cores stretch):
    // the others were stopped well inside the 5 s grace, i.e. by SIGTERM at once.
    const endOf = (label: string) => Date.parse(out.ranks.find((r) => r.label === label)?.endedAt ?? '');
    const stoppedWithin = Math.max(...['0', '1', '3'].map(endOf)) - endOf('2');
    process.stdout.write(
      `supervise: others stopped ${stoppedWithin} ms after rank 2 failed (harness ${Date.now() - started} ms)\n`,
    );
    expect(stoppedWithin).toBeLessThan(2000);
    expect(out.status).toBe('failed');
    expect(out.exitCode).toBe(7);
    expect(out.rootCause).toMatchObject({ label: '2', code: 7, cause: 'exited', rootCause: true });
    expect(out.ranks.filter((r) => r.label !== '2').map((r) => r.cause)).toEqual(['stopped', 'stopped', 'stopped']);
    expect(out.ranks.filter((r) => r.rootCause)).toHaveLength(1);
    expect(events.some((e) => e.kind === 'stopping' && e.reason.includes('rank 2'))).toBe(true);
  });

  it('a rank killed by a signal gives 128+signal', async () => {
    const plan = manualPlan(
      'sig',
      [host],
      [{ rank: 0, host: 'local', deviceId: 0, cwd: join(base, 's0'), argv: ['sh', '-c', 'kill -9 $$'], env: {} }],
    );
    const t = await LocalTransport.connect(host);
    const out = await supervise(plan, new Map([['local', t]]), {
      graceSeconds: 2,
      orphanGraceSeconds: 1,
      sink: new MemorySink(),
    });
    await t.close();
    expect(out.exitCode).toBe(137);
    expect(out.rootCause).toMatchObject({ cause: 'signal', signal: 'SIGKILL' });
  });
});

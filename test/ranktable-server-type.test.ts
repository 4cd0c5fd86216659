import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { simulatedHostFacts } from '../src/devices/simulate.js';
import { groupingProblem, serverKindOf, validateRankTable } from '../src/ranktable/validate.js';
import { ensureBuilt, NPURUN_BIN } from './helpers/cli-build.js';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'npurun-srvtype-'));
const npurun = (args: string[]) =>
  execa('node', [NPURUN_BIN, ...args], { reject: false, cwd: work, env: { NO_COLOR: '1' } });

beforeAll(ensureBuilt);

/** The 8-device hccl_tools fixture with `extra` more devices added to its one server. */
function tableWithDevices(extra: number): unknown {
  const t = JSON.parse(readFileSync(join(FIX, 'hccl_8p_01234567_10.155.111.140.json'), 'utf8')) as {
    server_list: { device: { device_id: string; device_ip: string; rank_id: string }[] }[];
  };
  const dev = t.server_list[0]!.device;
  for (let i = 0; i < extra; i++)
    dev.push({ device_id: String(8 + i), device_ip: `192.168.200.${10 + i}`, rank_id: String(8 + i) });
  return t;
}

describe('device counts and ids follow the server type (910A/910B: 8 NPUs; A3: 16 dies)', () => {
  it('ids above 7 are refused on a 910 server, allowed on an A3; a table alone gets a warning naming them', () => {
    expect(groupingProblem([0, 1, 2, 3, 4, 5, 6, 7, 8], '910')).toMatch(
      /device ids 8 are beyond 7: a 910A\/910B server has 8 NPUs/,
    );
    expect(groupingProblem([0, 1, 2, 3, 4, 5, 6, 7, 8], 'a3')).toBeUndefined();
    expect(groupingProblem([0, 1, 2], 'a3')).toBeUndefined();
    expect(serverKindOf(simulatedHostFacts(8).devices)).toBe('910');
    expect(serverKindOf(simulatedHostFacts(12).devices)).toBe('a3');
    for (const extra of [1, 4]) {
      const r = validateRankTable(tableWithDevices(extra));
      expect(r.warnings.map((p) => p.message).join('\n')).toMatch(/ids .*8.* above 7: right only on an A3 server/);
    }
    expect(validateRankTable(tableWithDevices(0)).warnings).toEqual([]);
  });

  it('--simulate 1-8 is a 910B server; 9-16 are the dies of an A3 server, numbered as npu-smi numbers them', () => {
    const b = simulatedHostFacts(8);
    expect(b.devices.map((d) => [d.npuId, d.chipId])).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => [i, 0]));
    expect(b.devices[0]!.name).toMatch(/910B/);
    const a3 = simulatedHostFacts(16);
    expect(a3.devices.map((d) => `${d.npuId}/${d.chipId}`)).toEqual(
      Array.from({ length: 16 }, (_, i) => `${Math.floor(i / 2)}/${i % 2}`),
    );
    expect(a3.devices[0]!.name).toMatch(/A3/);
    expect(simulatedHostFacts(9).devices.at(-1)).toMatchObject({ deviceId: 8, npuId: 4, chipId: 0 });
  });

  it('as processes: validate warns about 9 devices on one server; generate --simulate 9 models an A3 (9 dies), --simulate 8 a 910B', async () => {
    const file = join(work, 'nine.json');
    writeFileSync(file, JSON.stringify(tableWithDevices(1)));
    const v = await npurun(['ranktable', 'validate', file]);
    expect(v.stderr).toMatch(
      /warning: server_list\[0\]\.device: 9 devices with ids 8 above 7: right only on an A3 server/,
    );
    const g = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '9',
      '--server-ip',
      '10.0.0.1',
      '--out',
      join(work, 'g.json'),
    ]);
    expect(g.exitCode, g.stdout + g.stderr).toBe(0);
    const d = await npurun(['devices', '--simulate', '9']);
    expect(d.stdout).toMatch(/^ +8 +4\/0 +Ascend910 A3 \(simulated\)/m);
  }, 60_000);
});

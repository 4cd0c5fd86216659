import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostFacts } from '../src/devices/types.js';
import { ensureBuilt, NPURUN_BIN } from './helpers/cli-build.js';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** PATH and NPURUN_HCCN_CONF for stand-in npu-smi / hccn_tool printing fixture text, like a real server. */
function standIns(npuSmiFixture: string, hccnConf = `${FIX}hccn.conf.server-a`): Record<string, string> {
  const bin = mkdtempSync(join(tmpdir(), 'npurun-tools-'));
  writeFileSync(join(bin, 'npu-smi'), `#!/bin/sh\ncat ${FIX}${npuSmiFixture}\n`);
  writeFileSync(join(bin, 'hccn_tool'), '#!/bin/sh\necho "error: no address for device $2"\n');
  chmodSync(join(bin, 'npu-smi'), 0o755);
  chmodSync(join(bin, 'hccn_tool'), 0o755);
  return { PATH: `${bin}:/usr/bin:/bin`, NPURUN_HCCN_CONF: hccnConf };
}
const npurun = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [NPURUN_BIN, ...args], { reject: false, env: { NO_COLOR: '1', ...env } });

beforeAll(ensureBuilt);

describe('npurun devices as a process', () => {
  it('910B stand-ins: a table of every device with its address and source, the Warning and held devices named; exit 1', async () => {
    const r = await npurun(['devices'], standIns('npu-smi-info-910b.txt'));
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^\S+: 8 NPUs via \/.*\/npu-smi$/m);
    expect(r.stdout).toMatch(/^ {2}device\s+npu\/chip\s+name\s+health\s+device ip\s+from\s+bus id\s+held by$/m);
    expect(r.stdout).toMatch(/^ {2}3\s+3\/0\s+910B3\s+Warning\s+192\.168\.103\.101\s+hccn\.conf\s+0000:C4:00\.0\s+-$/m);
    expect(r.stdout).toMatch(
      /^ {2}5\s+5\/0\s+910B3\s+OK\s+192\.168\.101\.100\s+hccn\.conf\s+0000:C6:00\.0\s+271828 python3$/m,
    );
    expect(r.stdout).toMatch(/problem: device 3 health is Warning/);
    expect(r.stdout).toMatch(/problem: device 5 is held by pid 271828 \(python3\)/);
  });

  it('A3 stand-ins: 16 devices by Phy-ID; those without an address are named with where npurun looked', async () => {
    const r = await npurun(['devices', '--json'], standIns('npu-smi-info-a3.txt'));
    const facts = JSON.parse(r.stdout) as HostFacts;
    expect(facts.devices.map((d) => d.deviceId)).toEqual([...Array(16).keys()]);
    expect(facts.devices[9]).toMatchObject({ npuId: 4, chipId: 1 });
    expect(
      facts.problems.filter((p) =>
        /has no address: no address_\d+ in .*hccn\.conf\.server-a and `hccn_tool -i \d+ -ip -g` gave none/.test(p),
      ),
    ).toHaveLength(8);
    expect(r.exitCode).toBe(1);
  });

  it('910A stand-ins: the Critical device and the two processes holding NPU 2', async () => {
    // npu-smi-info-910a.txt is hand-written (test/fixtures/PROVENANCE-devices.md), not captured from a 910A server.
    const r = await npurun(['devices'], standIns('npu-smi-info-910a.txt'));
    expect(r.stdout).toMatch(/problem: device 6 health is Critical/);
    expect(r.stdout).toMatch(
      /^ {2}2\s+2\/0\s+910A\s+OK\s+\S+\s+hccn\.conf\s+0000:41:00\.0\s+31415 python, 31416 python$/m,
    );
  });

  it('a machine without npu-smi: a clear message where npurun looked, never an empty table; exit 3', async () => {
    const r = await npurun(['devices'], { PATH: '/usr/bin:/bin' });
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toMatch(/: no NPUs found\n/);
    expect(r.stdout).toMatch(
      /problem: no npu-smi found \(looked on PATH and in \/usr\/local\/Ascend\/driver\/tools, \/usr\/local\/sbin, \/usr\/local\/bin, \/usr\/local\/dcmi\)/,
    );
    expect(r.stdout).not.toMatch(/device\s+npu\/chip/);
  });

  it('--simulate 4: four healthy addressed devices, exit 0; --json prints the HostFacts', async () => {
    const r = await npurun(['devices', '--simulate', '4']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/: 4 NPUs \(simulated\)/);
    expect(r.stdout).toMatch(/^ {2}3\s+3\/0\s+910B3 \(simulated\)\s+OK\s+192\.168\.103\.101\s+simulated/m);
    const j = await npurun(['devices', '--simulate', '4', '--json']);
    const facts = JSON.parse(j.stdout) as HostFacts;
    expect(facts).toMatchObject({ simulated: true, problems: [] });
    expect(facts.devices).toHaveLength(4);
    expect(facts.cpus.length).toBeGreaterThan(0);
  });

  it('usage errors exit 2 with a message; --help explains the exit codes and NPURUN_HCCN_CONF', async () => {
    const bad = await npurun(['devices', '--simulate', '17']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--simulate: "17" is not a whole number from 1 to 16/);
    const flag = await npurun(['devices', '--device', '0']);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toMatch(/Unknown option '--device'/);
    const both = await npurun(['devices', '--simulate', '2', '--hosts', 'hosts/two-servers.yaml']);
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toMatch(/--simulate: not with --hosts/);
    const help = await npurun(['devices', '--help']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/Exit code: 0 every device healthy, free and addressed; 1 .*; 3 a host has no usable/s);
    expect(help.stdout).toMatch(/NPURUN_HCCN_CONF/);
  });
});

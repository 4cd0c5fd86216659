import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { detectHostIp, hostIpFromRoutes } from '../src/devices/host-ip.js';
import { parseHccnConf, parseHccnToolIp, parseNpuSmiInfo } from '../src/devices/npu-smi.js';
import { parseCpuList, parseIpAddr, parseProbeOutput, probeHost, PROBE_SCRIPT } from '../src/devices/probe.js';
import { simulatedHostFacts } from '../src/devices/simulate.js';
import type { HostFacts, ShellRunner } from '../src/devices/types.js';
import { parseDeviceList } from '../src/devices/device-list.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

describe('npu-smi info', () => {
  it('reads a 910B server: 8 devices, health, bus ids, the process holding NPU 5', () => {
    const info = parseNpuSmiInfo(fixture('npu-smi-info-910b.txt'));
    expect(info.version).toBe('23.0.6');
    expect(info.devices.map((d) => d.deviceId)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(info.devices[3]).toMatchObject({ name: '910B3', health: 'Warning', busId: '0000:C4:00.0' });
    expect(info.devices[5]!.processes).toEqual([{ pid: 271828, name: 'python3', memoryMiB: 61034 }]);
    expect(info.devices.filter((d) => d.processes.length > 0)).toHaveLength(1);
  });
  it('reads an A3 server: 8 NPUs x 2 chips numbered by Phy-ID', () => {
    const info = parseNpuSmiInfo(fixture('npu-smi-info-a3.txt'));
    expect(info.devices.map((d) => d.deviceId)).toEqual([...Array(16).keys()]);
    expect(info.devices[3]).toMatchObject({ npuId: 1, chipId: 1, busId: '0000:9C:00.0' });
  });
  it('reads a 910A server: one chip per NPU, the Critical device, two processes on NPU 2', () => {
    // npu-smi-info-910a.txt is hand-written (test/fixtures/PROVENANCE-devices.md), not captured from a 910A server.
    const info = parseNpuSmiInfo(fixture('npu-smi-info-910a.txt'));
    expect(info.version).toBe('21.0.4');
    expect(info.devices.map((d) => `${d.deviceId}:${d.npuId}/${d.chipId}`)).toEqual([
      '0:0/0',
      '1:1/0',
      '2:2/0',
      '3:3/0',
      '4:4/0',
      '5:5/0',
      '6:6/0',
      '7:7/0',
    ]);
    expect(info.devices[6]).toMatchObject({ name: '910A', health: 'Critical', busId: '0000:42:00.0' });
    expect(info.devices[2]!.processes).toEqual([
      { pid: 31415, name: 'python', memoryMiB: 27000 },
      { pid: 31416, name: 'python', memoryMiB: 2100 },
    ]);
    expect(info.devices.filter((d) => d.processes.length > 0).map((d) => d.deviceId)).toEqual([2]);
  });
  it('an empty or foreign text gives no devices, not a crash', () => {
    expect(parseNpuSmiInfo('').devices).toEqual([]);
    expect(parseNpuSmiInfo('dcmi module initialize failed. ret is -8005').devices).toEqual([]);
  });
});

describe('hccn.conf and hccn_tool', () => {
  it('reads address_N per device', () => {
    const conf = parseHccnConf(fixture('hccn.conf.server-a'));
    expect(conf.get(0)).toMatchObject({ address: '192.168.100.101', netmask: '255.255.255.0' });
    expect(conf.get(7)?.address).toBe('192.168.103.100');
  });
  it('takes the ipaddr line of hccn_tool -ip -g', () => {
    expect(parseHccnToolIp(fixture('hccn_tool-i0-ip-g.txt'))).toBe('192.168.100.101');
    expect(parseHccnToolIp('error: device 9 not found')).toBeUndefined();
  });
});

describe('probe output', () => {
  const probe = (smi: string, conf: string, extra = '') =>
    `@@npurun:hostname@@\nserver-a\n@@npurun:npu-smi-path@@\n/usr/local/sbin/npu-smi\n@@npurun:npu-smi@@\n${smi}\n@@npurun:hccn-conf-path@@\n/etc/hccn.conf\n@@npurun:hccn-conf@@\n${conf}\n@@npurun:hccn-tool-path@@\n/usr/local/Ascend/driver/tools/hccn_tool\n${extra}@@npurun:cpus@@\n0-7\n@@npurun:numa@@\n/sys/devices/system/node/node0/cpulist 0-3\n/sys/devices/system/node/node1/cpulist 4-7\n@@npurun:interfaces@@\n1: lo    inet 127.0.0.1/8 scope host lo\\\n2: eth0@if9    inet 10.213.0.11/24 brd 10.213.0.255 scope global eth0\\\n@@npurun:end@@\n`;
  it('joins npu-smi, hccn.conf and hccn_tool, and names every problem', () => {
    const conf = fixture('hccn.conf.server-a')
      .split('\n')
      .filter((l) => !l.startsWith('address_6=') && !l.startsWith('address_7='))
      .join('\n');
    const facts = parseProbeOutput(
      probe(
        fixture('npu-smi-info-910b.txt'),
        conf,
        '@@npurun:hccn-tool-6@@\nipaddr:192.168.102.100\nnetmask:255.255.255.0\n@@npurun:hccn-tool-7@@\nerror\n',
      ),
    );
    expect(facts.hostname).toBe('server-a');
    expect(facts.devices[0]).toMatchObject({ deviceIp: '192.168.100.101', ipSource: 'hccn.conf' });
    expect(facts.devices[6]).toMatchObject({ deviceIp: '192.168.102.100', ipSource: 'hccn_tool' });
    expect(facts.devices[7]!.deviceIp).toBeUndefined();
    expect(facts.problems).toEqual([
      'device 3 health is Warning',
      'device 5 is held by pid 271828 (python3)',
      'device 7 has no address: no address_7 in /etc/hccn.conf and `hccn_tool -i 7 -ip -g` gave none',
    ]);
    expect(facts.cpus).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(facts.numaNodes).toEqual([
      { node: 0, cpus: [0, 1, 2, 3] },
      { node: 1, cpus: [4, 5, 6, 7] },
    ]);
    expect(facts.interfaces).toEqual([
      { name: 'lo', addresses: ['127.0.0.1'] },
      { name: 'eth0', addresses: ['10.213.0.11'] },
    ]);
  });
  it('a host without npu-smi says where it looked', () => {
    const facts = parseProbeOutput('@@npurun:hostname@@\nx\n@@npurun:npu-smi-path@@\n\n@@npurun:end@@\n');
    expect(facts.devices).toEqual([]);
    expect(facts.problems[0]).toMatch(/no npu-smi found \(looked on PATH and in \/usr\/local\/Ascend\/driver\/tools/);
  });
  it('cpu lists', () => {
    expect(parseCpuList('0-3,8,10-11\n')).toEqual([0, 1, 2, 3, 8, 10, 11]);
    expect(parseIpAddr('')).toEqual([]);
  });
});

/** A runner like localShellRunner, with stand-in npu-smi / hccn_tool first on PATH and NPURUN_HCCN_CONF set. */
function standInHost(
  npuSmiFixture: string,
  hccnConf: string,
  toolIps: Record<number, string>,
): { run: ShellRunner; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'npurun-probe-'));
  const log = join(dir, 'hccn_tool.calls');
  writeFileSync(log, '');
  writeFileSync(
    join(dir, 'npu-smi'),
    `#!/bin/sh\ncat ${fileURLToPath(new URL(`./fixtures/${npuSmiFixture}`, import.meta.url))}\n`,
  );
  const cases = Object.entries(toolIps)
    .map(([id, ip]) => `  ${id}) echo "ipaddr:${ip}"; echo "netmask:255.255.255.0" ;;`)
    .join('\n');
  writeFileSync(
    join(dir, 'hccn_tool'),
    `#!/bin/sh\necho "$*" >> ${log}\ncase "$2" in\n${cases}\n  *) echo "device $2 not found" ;;\nesac\n`,
  );
  chmodSync(join(dir, 'npu-smi'), 0o755);
  chmodSync(join(dir, 'hccn_tool'), 0o755);
  writeFileSync(join(dir, 'hccn.conf'), hccnConf);
  const run: ShellRunner = async (script) => {
    const r = await execa('sh', ['-s'], {
      input: script,
      reject: false,
      env: { PATH: `${dir}:/usr/bin:/bin`, NPURUN_HCCN_CONF: join(dir, 'hccn.conf') },
    });
    return { stdout: r.stdout, stderr: r.stderr, code: r.exitCode ?? null };
  };
  return { run, calls: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

describe('the probe script, run by sh with stand-in tools', () => {
  it('asks hccn_tool only for devices npu-smi lists that hccn.conf has no address for, in one run', async () => {
    const conf = fixture('hccn.conf.server-a')
      .split('\n')
      .filter((l) => !/^address_[67]=/.test(l))
      .join('\n');
    const host = standInHost('npu-smi-info-910b.txt', conf, { 6: '192.168.102.100' });
    const facts = await probeHost(host.run);
    expect(host.calls()).toEqual(['-i 6 -ip -g', '-i 7 -ip -g']);
    expect(facts.tools.npuSmi).toMatch(/npurun-probe-.*\/npu-smi$/);
    expect(facts.devices.map((d) => `${d.deviceId} ${d.deviceIp ?? '-'} ${d.ipSource ?? '-'}`)).toEqual([
      '0 192.168.100.101 hccn.conf',
      '1 192.168.101.101 hccn.conf',
      '2 192.168.102.101 hccn.conf',
      '3 192.168.103.101 hccn.conf',
      '4 192.168.100.100 hccn.conf',
      '5 192.168.101.100 hccn.conf',
      '6 192.168.102.100 hccn_tool',
      '7 - -',
    ]);
    expect(facts.problems).toContain(
      `device 7 has no address: no address_7 in ${join(facts.tools.npuSmi!.replace(/\/npu-smi$/, ''), 'hccn.conf')} and \`hccn_tool -i 7 -ip -g\` gave none`,
    );
    expect(facts.cpus.length).toBeGreaterThan(0);
  });
  it('on an A3 server asks hccn_tool by Phy-ID (0-15), and reads a hccn.conf without a final newline', async () => {
    const conf = Array.from({ length: 8 }, (_, i) => `address_${i}=192.168.1.${i + 1}`).join('\n');
    const host = standInHost('npu-smi-info-a3.txt', conf, { 8: '192.168.1.9', 15: '192.168.1.16' });
    const facts = await probeHost(host.run);
    expect(host.calls()).toEqual([8, 9, 10, 11, 12, 13, 14, 15].map((i) => `-i ${i} -ip -g`));
    expect(facts.devices[7]).toMatchObject({
      deviceId: 7,
      npuId: 3,
      chipId: 1,
      deviceIp: '192.168.1.8',
      ipSource: 'hccn.conf',
    });
    expect(facts.devices[15]).toMatchObject({
      deviceId: 15,
      npuId: 7,
      chipId: 1,
      deviceIp: '192.168.1.16',
      ipSource: 'hccn_tool',
    });
    expect(facts.problems.filter((p) => p.includes('has no address'))).toHaveLength(6);
  });
  it('is POSIX sh: dash -n accepts it and it uses no bash-only syntax', async () => {
    const r = await execa('dash', ['-n'], { input: PROBE_SCRIPT, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(PROBE_SCRIPT).not.toMatch(/\[\[ |\bfunction\b|<<<|\$\{[A-Z_]+\[|\bsource |\$'/);
  });
  it('a probe cut short is an unreachable-host error with what stderr said', async () => {
    await expect(
      probeHost(async () => ({ stdout: '@@npurun:hostname@@\nx\n', stderr: 'Connection reset', code: 255 })),
    ).rejects.toThrow(/device probe did not complete \(exit 255\): Connection reset/);
  });
});

describe('simulated hosts', () => {
  it('8 devices carry the addresses of hccn.conf.server-a; server 1 those of server-b', () => {
    const a = parseHccnConf(fixture('hccn.conf.server-a'));
    const b = parseHccnConf(fixture('hccn.conf.server-b'));
    expect(simulatedHostFacts(8).devices.map((d) => d.deviceIp)).toEqual(
      [...Array(8).keys()].map((i) => a.get(i)!.address),
    );
    expect(simulatedHostFacts(8, { serverIndex: 1 }).devices.map((d) => d.deviceIp)).toEqual(
      [...Array(8).keys()].map((i) => b.get(i)!.address),
    );
  });
  it('16 devices on 3 servers: every address unique, every device healthy and free', () => {
    const all = [0, 1, 2].flatMap((s) => simulatedHostFacts(16, { serverIndex: s, hostname: `sim${s}` }).devices);
    expect(new Set(all.map((d) => d.deviceIp)).size).toBe(48);
    expect(all.every((d) => d.health === 'OK' && d.processes.length === 0 && d.ipSource === 'simulated')).toBe(true);
    expect(simulatedHostFacts(2, { hostname: 'sim9' })).toMatchObject({
      hostname: 'sim9',
      simulated: true,
      problems: [],
    });
  });
  it('refuses device counts outside 1..16', () => {
    expect(() => simulatedHostFacts(0)).toThrow(/--simulate: 0 is not a device count from 1 to 16/);
    expect(() => simulatedHostFacts(17)).toThrow(/17 is not a device count/);
    expect(() => simulatedHostFacts(2.5)).toThrow(/2.5 is not a device count/);
  });
});

describe('host IP for the rank table', () => {
  const interfaces = [
    { name: 'lo', addresses: ['127.0.0.1'] },
    { name: 'eth0', addresses: ['10.155.111.140'] },
    { name: 'eth1', addresses: ['172.16.0.5'] },
  ];
  it('takes the src of the default route, else the address of its interface', () => {
    expect(hostIpFromRoutes('default via 172.16.0.1 dev eth1 proto dhcp src 172.16.0.5 metric 100\n', interfaces)).toBe(
      '172.16.0.5',
    );
    expect(hostIpFromRoutes('default via 10.155.111.1 dev eth0 \n', interfaces)).toBe('10.155.111.140');
  });
  it('without a default route, the first non-loopback IPv4; none at all: undefined', () => {
    expect(hostIpFromRoutes('', interfaces)).toBe('10.155.111.140');
    expect(hostIpFromRoutes('', [{ name: 'lo', addresses: ['127.0.0.1'] }])).toBeUndefined();
  });
  it('detectHostIp asks the host through the runner, and says to give --server-ip when it cannot tell', async () => {
    const facts = { ...simulatedHostFacts(1), hostname: 'n1', interfaces } as HostFacts;
    const scripts: string[] = [];
    const run: ShellRunner = async (script) => {
      scripts.push(script);
      return { stdout: 'default via 10.155.111.1 dev eth0\n', stderr: '', code: 0 };
    };
    expect(await detectHostIp(facts, run)).toBe('10.155.111.140');
    expect(scripts).toEqual(['ip -o -4 route show default 2>/dev/null']);
    const none = { ...facts, interfaces: [{ name: 'lo', addresses: ['127.0.0.1'] }] };
    await expect(detectHostIp(none, async () => ({ stdout: '', stderr: '', code: 0 }))).rejects.toThrow(
      /cannot detect the IP of n1 .*give --server-ip/,
    );
  });
});

describe('device lists', () => {
  it('accepts the hccl_tools range, inclusive ranges and lists', () => {
    expect(parseDeviceList('[0,8)', '--devices')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(parseDeviceList('[4,8)', '--devices')).toEqual([4, 5, 6, 7]);
    expect(parseDeviceList('0-3', '--devices')).toEqual([0, 1, 2, 3]);
    expect(parseDeviceList('0,1, 2,3', '--devices')).toEqual([0, 1, 2, 3]);
    expect(parseDeviceList('0-1,6', '--devices')).toEqual([0, 1, 6]);
  });
  it('refuses malformed selections with the flag and the expected forms', () => {
    expect(() => parseDeviceList('[3,3)', '--devices')).toThrow(/--devices: empty range/);
    expect(() => parseDeviceList('0,0', '--devices')).toThrow(/listed twice/);
    expect(() => parseDeviceList('a', '--devices')).toThrow(/expected "\[a,b\)"/);
    expect(() => parseDeviceList('16', 'devices')).toThrow(/out of range/);
  });
});

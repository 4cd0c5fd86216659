import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseHccnConf, parseHccnToolIp, parseNpuSmiInfo } from '../src/devices/npu-smi.js';
import { parseCpuList, parseIpAddr, parseProbeOutput } from '../src/devices/probe.js';
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
  const probe = (smi: string, conf: string, extra = '') => `@@npurun:hostname@@\nserver-a\n@@npurun:npu-smi-path@@\n/usr/local/sbin/npu-smi\n@@npurun:npu-smi@@\n${smi}\n@@npurun:hccn-conf-path@@\n/etc/hccn.conf\n@@npurun:hccn-conf@@\n${conf}\n@@npurun:hccn-tool-path@@\n/usr/local/Ascend/driver/tools/hccn_tool\n${extra}@@npurun:cpus@@\n0-7\n@@npurun:numa@@\n/sys/devices/system/node/node0/cpulist 0-3\n/sys/devices/system/node/node1/cpulist 4-7\n@@npurun:interfaces@@\n1: lo    inet 127.0.0.1/8 scope host lo\\\n2: eth0@if9    inet 10.213.0.11/24 brd 10.213.0.255 scope global eth0\\\n@@npurun:end@@\n`;
  it('joins npu-smi, hccn.conf and hccn_tool, and names every problem', () => {
    const conf = fixture('hccn.conf.server-a').split('\n').filter((l) => !l.startsWith('address_6=') && !l.startsWith('address_7=')).join('\n');
    const facts = parseProbeOutput(probe(fixture('npu-smi-info-910b.txt'), conf, '@@npurun:hccn-tool-6@@\nipaddr:192.168.102.100\nnetmask:255.255.255.0\n@@npurun:hccn-tool-7@@\nerror\n'));
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
    expect(facts.numaNodes).toEqual([{ node: 0, cpus: [0, 1, 2, 3] }, { node: 1, cpus: [4, 5, 6, 7] }]);
    expect(facts.interfaces).toEqual([{ name: 'lo', addresses: ['127.0.0.1'] }, { name: 'eth0', addresses: ['10.213.0.11'] }]);
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

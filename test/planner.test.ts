import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostFacts } from '../src/devices/types.js';
import { loadInventory } from '../src/inventory/inventory.js';
import { parseSshConfig, resolveSshHost } from '../src/inventory/ssh-config.js';
import { checkVisibleDevices, loadJobFile, resolveJob, splitCommand } from '../src/plan/job.js';
import { splitCpus } from '../src/plan/cpus.js';
import { describePlan, planRun } from '../src/plan/plan.js';
import type { HostSpec, ProfileName } from '../src/plan/types.js';

const tmp = mkdtempSync(join(tmpdir(), 'npurun-plan-'));
const file = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

function facts(hostIndex: number, n = 8, tweak: (f: HostFacts) => void = () => {}): HostFacts {
  const f: HostFacts = {
    hostname: `h${hostIndex}`,
    devices: Array.from({ length: n }, (_, i) => ({ deviceId: i, npuId: i, chipId: 0, name: '910B3', health: 'OK', deviceIp: `192.168.${100 + i}.${10 + hostIndex}`, ipSource: 'hccn.conf' as const, processes: [] })),
    cpus: [...Array(16).keys()],
    numaNodes: [{ node: 0, cpus: [...Array(8).keys()] }, { node: 1, cpus: [8, 9, 10, 11, 12, 13, 14, 15] }],
    interfaces: [{ name: 'lo', addresses: ['127.0.0.1'] }, { name: 'eth0', addresses: [`10.0.0.${10 + hostIndex}`] }],
    problems: [],
    tools: {},
  };
  tweak(f);
  return f;
}

const host = (i: number): HostSpec => ({ name: `h${i}`, address: `10.0.0.${10 + i}`, local: false, devices: 'auto' });

function plan(profile: ProfileName, hosts: number, extra: Partial<Parameters<typeof resolveJob>[1]> = {}, tweak?: (i: number, f: HostFacts) => void) {
  const job = resolveJob(undefined, { command: ['python', 'train.py'], env: [], profile, ...extra }, '/work');
  const hs = Array.from({ length: hosts }, (_, i) => host(i + 1));
  return planRun({ runId: '20261123-000000-t-abcd', job, hosts: hs, facts: Object.fromEntries(hs.map((h, i) => [h.name, facts(i + 1, 8, (f) => tweak?.(i + 1, f))])) });
}

describe('planner: ranks, rank table and the environment of each profile', () => {
  it('mindspore 4 hosts x 2: ranks host by host, rank table of the chosen devices, every variable', () => {
    const p = plan('mindspore', 4, { nprocPerNode: 2 });
    expect(p.ranks.map((r) => `${r.rank}@${r.host}:${r.deviceId}`)).toEqual(['0@h1:0', '1@h1:1', '2@h2:0', '3@h2:1', '4@h3:0', '5@h3:1', '6@h4:0', '7@h4:1']);
    expect(p.rankTable?.server_list.map((s) => [s.server_id, s.device.map((d) => `${d.device_id}/${d.device_ip}/${d.rank_id}`)])).toEqual([
      ['10.0.0.11', ['0/192.168.100.11/0', '1/192.168.101.11/1']],
      ['10.0.0.12', ['0/192.168.100.12/2', '1/192.168.101.12/3']],
      ['10.0.0.13', ['0/192.168.100.13/4', '1/192.168.101.13/5']],
      ['10.0.0.14', ['0/192.168.100.14/6', '1/192.168.101.14/7']],
    ]);
    const r5 = p.ranks[5]!;
    expect(r5.env).toMatchObject({
      RANK_TABLE_FILE: '/tmp/npurun/20261123-000000-t-abcd/rank_table.json', MINDSPORE_HCCL_CONFIG_PATH: '/tmp/npurun/20261123-000000-t-abcd/rank_table.json',
      RANK_SIZE: '8', RANK_ID: '5', DEVICE_ID: '1', DEVICE_NUM: '2', SERVER_ID: '2',
      NPURUN_RANK: '5', NPURUN_LOCAL_RANK: '1', NPURUN_NODE_RANK: '2', NPURUN_HOST: 'h3', NPURUN_DEVICE_ID: '1', NPURUN_WORLD_SIZE: '8',
      GLOO_SOCKET_IFNAME: 'eth0', HCCL_SOCKET_IFNAME: 'eth0', HCCL_IF_IP: '10.0.0.13',
    });
    expect(r5.cwd).toBe('/work/train_parallel5');
  });

  it('tensorflow, torch and msrun', () => {
    const tf = plan('tensorflow', 1).ranks[3]!.env;
    expect(tf).toMatchObject({ ASCEND_DEVICE_ID: '3', DEVICE_ID: '3', RANK_ID: '3', RANK_SIZE: '8', JOB_ID: '20261123000000' });
    const torch = plan('torch', 2, { nprocPerNode: 4 }).ranks[6]!.env;
    expect(torch).toMatchObject({ MASTER_ADDR: '10.0.0.11', MASTER_PORT: '29500', RANK: '6', WORLD_SIZE: '8', LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '4', NODE_RANK: '1' });
    expect(torch.RANK_TABLE_FILE).toBeUndefined();
    const ms = plan('msrun', 2, { nprocPerNode: 2 });
    expect(ms.ranks.map((r) => `${r.label}@${r.host}:${r.env.MS_ROLE}`)).toEqual(['sched@h1:MS_SCHED', '0@h1:MS_WORKER', '1@h1:MS_WORKER', '2@h2:MS_WORKER', '3@h2:MS_WORKER']);
    expect(ms.ranks[4]!.env).toMatchObject({ MS_SCHED_HOST: '10.0.0.11', MS_SCHED_PORT: '8118', MS_WORKER_NUM: '4', MS_NODE_ID: '3', DEVICE_ID: '1', RANK_SIZE: '4' });
    expect(ms.ranks[0]!.deviceId).toBeNull();
  });

  it('user environment wins, and is kept byte for byte', () => {
    const hostile = `a'b"c $(id) \`x\` \n ümlaut`;
    const p = plan('torch', 1, { env: [`X=${hostile}`, 'GLOO_SOCKET_IFNAME=ib0', 'EQ=a=b'] });
    expect(p.ranks[0]!.env).toMatchObject({ X: hostile, GLOO_SOCKET_IFNAME: 'ib0', EQ: 'a=b' });
  });

  it('refuses what would fail on the cluster, naming host and device', () => {
    expect(() => plan('mindspore', 2, { devices: '0-3' }, (i, f) => i === 2 && (f.devices[2]!.processes = [{ pid: 42 }]))).toThrow(/host h2: device 2 held by pid 42/);
    expect(() => plan('mindspore', 1, { devices: '0-3' }, (_i, f) => (f.devices[1]!.health = 'Alarm'))).toThrow(/host h1: device 1 health is Alarm/);
    expect(() => plan('mindspore', 1, { devices: '0-3' }, (_i, f) => delete f.devices[0]!.deviceIp)).toThrow(/device 0 has no device IP/);
    expect(() => plan('mindspore', 2, {}, (i, f) => i === 2 && (f.devices = f.devices.slice(0, 4)))).toThrow(/hosts would run different numbers of ranks \(h1: 8, h2: 4\)/);
    expect(() => plan('mindspore', 1, { devices: '2-5' })).toThrow(/cross the 910 device groups/);
    expect(() => plan('torch', 1, {}, (_i, f) => (f.interfaces = [{ name: 'eth1', addresses: ['10.9.9.9'] }]))).toThrow(/inventory address 10\.0\.0\.11 is on none of its interfaces \(eth1 10\.9\.9\.9\)/);
    expect(() => plan('mindspore', 1, { nprocPerNode: 9 })).toThrow(/9 ranks asked, but only 8 usable devices/);
  });

  it('auto skips unhealthy and held devices; CPU-only torch hosts run with --nproc-per-node', () => {
    const p = plan('torch', 1, {}, (_i, f) => {
      f.devices[3]!.health = 'Warning';
      f.devices[5]!.processes = [{ pid: 1 }];
    });
    expect(p.ranks.map((r) => r.deviceId)).toEqual([0, 1, 2, 4, 6, 7]);
    const cpu = plan('torch', 2, { nprocPerNode: 3 }, (_i, f) => (f.devices = []));
    expect(cpu.ranks.map((r) => r.deviceId)).toEqual([null, null, null, null, null, null]);
  });

  it('checkpoint policy and resume reach the ranks', () => {
    const job = resolveJob(loadJobFile(file('ck.yaml', 'profile: torch\ncommand: [python, t.py, "--every={ckpt.interval}"]\ncheckpoint: { interval: 5, keep_max: 3, master_only: true, dir: \"ck_{rank}\" }\nresume_arg: "--from={path}"\n')), { command: [], env: [] }, '/w');
    expect(job.command).toEqual(['python', 't.py', '--every=5']);
    const p = planRun({ runId: 'r', job, hosts: [host(1)], facts: { h1: facts(1, 2) }, resume: { byLabel: { '0': '/w/r0/ck_0/0-5_50.ckpt' }, fallback: '/w/r0/ck_0/0-5_50.ckpt', epoch: 5, step: 50 } });
    expect(p.ranks.map((r) => [r.env.NPURUN_CKPT_SAVE, r.env.NPURUN_CKPT_DIR, r.env.NPURUN_CKPT_KEEP_MAX])).toEqual([['1', 'ck_0', '3'], ['0', 'ck_1', '3']]);
    expect(p.ranks[1]!.argv).toEqual(['python', 't.py', '--every=5', '--from=/w/r0/ck_0/0-5_50.ckpt']);
    expect(p.ranks[1]!.env.NPURUN_RESUME_STEP).toBe('50');
  });

  it('CPU binding: 1/N of the cores each, NUMA-local when the nodes divide the ranks', () => {
    expect(splitCpus([...Array(192).keys()], [{ node: 0, cpus: [...Array(96).keys()] }, { node: 1, cpus: [...Array(96).keys()].map((c) => c + 96) }], 8).map((s) => [s[0], s.length])).toEqual([
      [0, 24], [24, 24], [48, 24], [72, 24], [96, 24], [120, 24], [144, 24], [168, 24],
    ]);
    expect(splitCpus([0, 1, 2, 3], [], 2)).toEqual([[0, 1], [2, 3]]);
    expect(splitCpus([0, 1], [], 4)).toEqual([[0], [1], [0], [1]]);
    const p = plan('mindspore', 1, { bindCores: true });
    expect(p.ranks[4]!.cpus).toEqual([8, 9]);
    expect(describePlan(p)).toMatch(/rank 4: device 4, cpus 8-9, cwd \/work\/train_parallel4\n {4}command: python train\.py/);
  });
});

describe('job files and flags', () => {
  it('flags win over the file; defaults; command strings split like a shell without one', () => {
    const f = loadJobFile(file('j.yaml', 'name: j\nprofile: mindspore\ncommand: python train.py --name "a b" \'c d\' e\\ f\ngrace: 20\ndevices: "[0,4)"\n'));
    const job = resolveJob(f, { command: [], env: [], profile: 'torch', graceSeconds: 3 }, '/w');
    expect(job).toMatchObject({ profile: 'torch', graceSeconds: 3, devices: [0, 1, 2, 3], rankDir: 'train_parallel{rank}', masterPort: 29500, remoteDir: '/tmp/npurun/{run_id}', heartbeatTimeoutSeconds: 3 });
    expect(job.command).toEqual(['python', 'train.py', '--name', 'a b', 'c d', 'e f']);
    expect(resolveJob(undefined, { command: ['x'], env: [], profile: 'msrun' }, '/w').masterPort).toBe(8118);
    expect(splitCommand(`a "b \\" c" 'd $x'`, 'cmd')).toEqual(['a', 'b " c', 'd $x']);
    expect(() => splitCommand('a "b', 'cmd')).toThrow(/unterminated " quote/);
  });

  it('bad job input names the file, the field and what was expected', () => {
    expect(() => loadJobFile(file('n.yaml', 'env:\n  OMP_NUM_THREADS: 4\n'))).toThrow(/n\.yaml: invalid job file: env\.OMP_NUM_THREADS: expected string, got number 4 \(a string: quote numbers/);
    expect(() => loadJobFile(file('k.yaml', 'comand: [x]\n'))).toThrow(/k\.yaml: invalid job file: \(top level\): unknown key "comand"/);
    expect(() => loadJobFile(file('p.yaml', 'profile: pytorch\n'))).toThrow(/profile: expected one of "mindspore", "msrun", "tensorflow", "torch"/);
    expect(() => loadJobFile(file('y.yaml', 'command: [a\nb: ]\n'))).toThrow(/y\.yaml:\d+:\d+: not valid YAML/);
    expect(() => resolveJob(undefined, { command: ['x'], env: ['1X=y'] }, '/w')).toThrow(/--env: "1X=y" is not NAME=VALUE/);
    expect(() => resolveJob(undefined, { command: ['x'], env: ['NPURUN_RANK=3'] }, '/w')).toThrow(/NPURUN_\* variables are set by npurun/);
    expect(() => resolveJob(undefined, { command: ['x'], env: [] , profile: 'jax' }, '/w')).toThrow(/--profile: "jax" is not one of mindspore, msrun, tensorflow, torch/);
    expect(() => resolveJob(loadJobFile(file('ph.yaml', 'command: [x, "{vars.nope}"]\n')), { command: [], env: [] }, '/w')).toThrow(/placeholder \{vars\.nope\} has no value/);
    expect(() => checkVisibleDevices('1, 2,3', 'env')).toThrow(/must be ascending ids joined by commas without spaces/);
    expect(() => checkVisibleDevices('3,1', 'env')).toThrow(/ascending order/);
  });
});

describe('inventories and ssh_config', () => {
  const cfg = parseSshConfig(
    ['Host gpu-*', '  User trainer', '  IdentityFile ~/.ssh/%h_key', '', 'Host gpu-7 !gpu-8', '  Port 2222', '', 'Host gpu-7', '  Port 3333', '  HostName 10.1.1.7', '  ProxyJump login', '', 'Match user x', '  Port 1', '', 'Host *', '  StrictHostKeyChecking accept-new', '  UserKnownHostsFile ~/.ssh/a ~/.ssh/b', '  IdentityAgent none'].join('\n'),
    '/home/u',
  );
  it('ssh_config: patterns, negation, first value wins, tokens, Match skipped', () => {
    const r = resolveSshHost('gpu-7', cfg, {}, '/home/u');
    expect(r).toMatchObject({ hostname: '10.1.1.7', user: 'trainer', port: 2222, identityFiles: ['/home/u/.ssh/10.1.1.7_key'], knownHostsFiles: ['/home/u/.ssh/a', '/home/u/.ssh/b'], strictHostKeyChecking: 'accept-new', proxyJump: 'login', useAgent: false });
    expect(resolveSshHost('gpu-8', cfg, {}, '/home/u').port).toBe(22);
    expect(resolveSshHost('gpu-7', cfg, { port: 22, user: 'root' }, '/home/u')).toMatchObject({ port: 22, user: 'root' });
    expect(cfg.warnings[0]).toMatch(/Match blocks are not supported/);
  });

  it('an alias resolves to its HostName address; hostfiles and YAML both load', () => {
    const inv = file('a.yaml', 'hosts:\n  - { address: gpu-7 }\n');
    const [h] = loadInventory(inv, { sshConfigText: 'Host gpu-7\n  HostName 10.1.1.7\n', home: '/home/u' });
    expect(h).toMatchObject({ name: 'gpu-7', address: '10.1.1.7', local: false, ssh: { hostname: '10.1.1.7', strictHostKeyChecking: 'yes' } });
    const hf = loadInventory(file('hf', '# two\n10.0.0.1 slots=4\n\n10.0.0.2 slots=4  # second\n'), { home: '/home/u' });
    expect(hf.map((x) => [x.address, x.slots])).toEqual([['10.0.0.1', 4], ['10.0.0.2', 4]]);
  });

  const bad: [string, string, RegExp][] = [
    ['typo', 'hosts:\n  - { adress: 10.0.0.1 }\n', /hosts\[0\]: unknown key "adress" \(did you mean "address"\?\)/],
    ['port as string', 'hosts:\n  - { address: 10.0.0.1, port: "22" }\n', /hosts\[0\]\.port: expected integer, got string "22"/],
    ['port range', 'hosts:\n  - { address: 10.0.0.1, port: 70000 }\n', /hosts\[0\]\.port: expected a number <= 65535/],
    ['empty list', 'hosts: []\n', /hosts: expected at least 1 entry/],
    ['duplicate', 'hosts:\n  - { address: 10.0.0.1 }\n  - { address: 10.0.0.1 }\n', /hosts\[1\]: "10\.0\.0\.1" is listed twice \(also hosts\[0\]\)/],
    ['bad devices', 'hosts:\n  - { address: 10.0.0.1, devices: "0-20" }\n', /hosts\[0\]\.devices: device id 16 is out of range/],
    ['name with space', 'hosts:\n  - { address: 10.0.0.1, name: "my host" }\n', /hosts\[0\]\.name: got string "my host", expected a short name of letters, digits, '\.', '_' or '-'/],
    ['localhost mixed', 'hosts:\n  - { address: localhost }\n  - { address: 10.0.0.2 }\n', /mixes localhost with remote hosts/],
    ['yaml syntax', 'hosts:\n  - { address: 10.0.0.1\n', /:\d+:\d+: not valid YAML/],
    ['hostfile slots', 'node1 slots=x\n', /:1: slots=x is not a whole number/],
    ['neither form', '- just\n- a list\n', /not a hosts file: expected YAML with a `hosts:` list/],
  ];
  it.each(bad)('refuses %s, naming file, field and expectation', (name, text, message) => {
    const p = file(`bad-${name.replace(/\W+/g, '-')}`, text);
    expect(() => loadInventory(p, { home: '/home/u' })).toThrow(message);
    try {
      loadInventory(p, { home: '/home/u' });
    } catch (err) {
      expect((err as Error).message).toContain(p);
      expect((err as { exitCode: number }).exitCode).toBe(2);
    }
  });
});

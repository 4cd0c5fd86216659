import { describe, expect, it } from 'vitest';
import type { HostFacts } from '../src/devices/types.js';
import { simulatedHostFacts } from '../src/devices/simulate.js';
import { NpurunError } from '../src/errors.js';
import { splitCpus } from '../src/plan/cpus.js';
import { resolveJob, type JobFlags } from '../src/plan/job.js';
import { describePlan, jobId, planRun, quoteForDisplay, type PlanInput } from '../src/plan/plan.js';
import { newRunId } from '../src/plan/run-id.js';
import type { HostSpec, ProfileName } from '../src/plan/types.js';
import { generateRankTable } from '../src/ranktable/generate.js';

const RUN = '20261123-052433-t-a1b2';
const TABLE = `/tmp/npurun-{uid}/${RUN}/rank_table.json`;

/** Host i (1-based): address 10.0.0.(10+i) on eth0, device d's NIC at 192.168.(100+d).(10+i), 16 CPUs on 2 NUMA nodes. */
function facts(i: number, devices = 8): HostFacts {
  return {
    hostname: `h${i}`,
    devices: Array.from({ length: devices }, (_, d) => ({
      deviceId: d,
      npuId: d,
      chipId: 0,
      name: '910B3',
      health: 'OK',
      deviceIp: `192.168.${100 + d}.${10 + i}`,
      ipSource: 'hccn.conf' as const,
      processes: [],
    })),
    cpus: [...Array(16).keys()],
    numaNodes: [
      { node: 0, cpus: [0, 1, 2, 3, 4, 5, 6, 7] },
      { node: 1, cpus: [8, 9, 10, 11, 12, 13, 14, 15] },
    ],
    interfaces: [
      { name: 'lo', addresses: ['127.0.0.1'] },
      { name: 'eth0', addresses: [`10.0.0.${10 + i}`] },
    ],
    problems: [],
    tools: {},
  };
}

const host = (i: number): HostSpec => ({
  name: `h${i}`,
  address: `10.0.0.${10 + i}`,
  local: false,
  devices: 'auto',
  ssh: {
    hostname: `10.0.0.${10 + i}`,
    port: 22,
    user: 'root',
    identityFiles: [],
    knownHostsFiles: [],
    strictHostKeyChecking: 'yes',
    useAgent: true,
    ...(i === 2 ? { proxyJump: 'login' } : {}),
  },
});

interface Layout {
  profile: ProfileName;
  hosts: number;
  flags?: Partial<JobFlags>;
  tweak?: (hostIndex: number, f: HostFacts, h: HostSpec) => void;
  input?: Partial<PlanInput>;
}

function plan({ profile, hosts: n, flags = {}, tweak, input = {} }: Layout) {
  const job = resolveJob(undefined, { command: ['python', 'train.py'], env: [], profile, ...flags }, '/work');
  const hosts = Array.from({ length: n }, (_, k) => host(k + 1));
  const all = Object.fromEntries(hosts.map((h, k) => [h.name, facts(k + 1)]));
  hosts.forEach((h, k) => tweak?.(k + 1, all[h.name] as HostFacts, h));
  return planRun({ runId: RUN, job, hosts, facts: all, ...input });
}

function errorOf(fn: () => unknown): NpurunError {
  try {
    fn();
  } catch (err) {
    if (err instanceof NpurunError) return err;
    throw err;
  }
  throw new Error('expected an NpurunError');
}

const common = (
  rank: number,
  local: number,
  node: number,
  device: number | '',
  world: number,
  profile: ProfileName,
  hostIndex: number,
) => ({
  NPURUN_RUN_ID: RUN,
  NPURUN_RANK: String(rank),
  NPURUN_LOCAL_RANK: String(local),
  NPURUN_NODE_RANK: String(node),
  NPURUN_WORLD_SIZE: String(world),
  NPURUN_HOST: `h${hostIndex}`,
  NPURUN_DEVICE_ID: String(device),
  NPURUN_PROFILE: profile,
  GLOO_SOCKET_IFNAME: 'eth0',
  HCCL_SOCKET_IFNAME: 'eth0',
  HCCL_IF_IP: `10.0.0.${10 + hostIndex}`,
});

describe('ranks are numbered host by host in inventory order, device order within a host', () => {
  it('4 hosts x 2', () => {
    const p = plan({ profile: 'mindspore', hosts: 4, flags: { nprocPerNode: 2 } });
    expect(p.ranks.map((r) => `${r.rank}:${r.nodeRank}/${r.localRank}@${r.host}:${r.deviceId}`)).toEqual([
      '0:0/0@h1:0',
      '1:0/1@h1:1',
      '2:1/0@h2:0',
      '3:1/1@h2:1',
      '4:2/0@h3:0',
      '5:2/1@h3:1',
      '6:3/0@h4:0',
      '7:3/1@h4:1',
    ]);
    expect([p.worldSize, p.masterAddr, p.masterPort]).toEqual([8, '10.0.0.11', 29500]);
  });

  it('inventory and flag device lists pick the devices; nproc takes the first N', () => {
    const p = plan({
      profile: 'mindspore',
      hosts: 2,
      tweak: (_i, _f, h) => (h.devices = [4, 5, 6, 7]),
      flags: { nprocPerNode: 2 },
    });
    expect(p.ranks.map((r) => r.deviceId)).toEqual([4, 5, 4, 5]);
    const q = plan({ profile: 'torch', hosts: 1, flags: { devices: '2,5,7' } });
    expect(q.ranks.map((r) => r.deviceId)).toEqual([2, 5, 7]);
  });

  it('hostfile slots=N take the first N usable devices', () => {
    const p = plan({
      profile: 'torch',
      hosts: 2,
      tweak: (i, f, h) => {
        h.slots = 3;
        if (i === 2) f.devices[0]!.processes = [{ pid: 9 }];
      },
    });
    expect(p.ranks.map((r) => `${r.host}:${r.deviceId}`)).toEqual(['h1:0', 'h1:1', 'h1:2', 'h2:1', 'h2:2', 'h2:3']);
  });
});

describe('mindspore profile (rank-table mode)', () => {
  it('1 host x 8: the rank table and each rank environment', () => {
    const p = plan({ profile: 'mindspore', hosts: 1 });
    expect(p.rankTablePath).toBe(TABLE);
    expect(
      p.rankTable?.server_list.map((s) => [
        s.server_id,
        s.device.map((d) => `${d.device_id}/${d.device_ip}/${d.rank_id}`),
      ]),
    ).toEqual([['10.0.0.11', [0, 1, 2, 3, 4, 5, 6, 7].map((d) => `${d}/192.168.${100 + d}.11/${d}`)]]);
    expect(p.ranks[3]!.env).toEqual({
      ...common(3, 3, 0, 3, 8, 'mindspore', 1),
      RANK_TABLE_FILE: TABLE,
      MINDSPORE_HCCL_CONFIG_PATH: TABLE,
      RANK_SIZE: '8',
      RANK_ID: '3',
      DEVICE_ID: '3',
      DEVICE_NUM: '8',
      SERVER_ID: '0',
    });
    expect(p.ranks.map((r) => r.cwd)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((r) => `/work/train_parallel${r}`));
  });

  it('4 hosts x 2: servers in inventory order with their device IPs; DEVICE_ID physical, SERVER_ID the node', () => {
    const p = plan({ profile: 'mindspore', hosts: 4, flags: { devices: '4,5' } });
    expect(
      p.rankTable?.server_list.map((s) => [
        s.server_id,
        s.device.map((d) => `${d.device_id}/${d.device_ip}/${d.rank_id}`),
      ]),
    ).toEqual([
      ['10.0.0.11', ['4/192.168.104.11/0', '5/192.168.105.11/1']],
      ['10.0.0.12', ['4/192.168.104.12/2', '5/192.168.105.12/3']],
      ['10.0.0.13', ['4/192.168.104.13/4', '5/192.168.105.13/5']],
      ['10.0.0.14', ['4/192.168.104.14/6', '5/192.168.105.14/7']],
    ]);
    expect(p.rankTable).toEqual(
      generateRankTable(
        p.rankTable!.server_list.map((s) => ({
          serverId: s.server_id,
          devices: s.device.map((d) => ({ deviceId: Number(d.device_id), deviceIp: d.device_ip })),
        })),
      ),
    );
    expect(p.ranks[5]!.env).toEqual({
      ...common(5, 1, 2, 5, 8, 'mindspore', 3),
      RANK_TABLE_FILE: TABLE,
      MINDSPORE_HCCL_CONFIG_PATH: TABLE,
      RANK_SIZE: '8',
      RANK_ID: '5',
      DEVICE_ID: '5',
      DEVICE_NUM: '2',
      SERVER_ID: '2',
    });
  });
});

describe('tensorflow profile', () => {
  it('1 host x 8', () => {
    const p = plan({ profile: 'tensorflow', hosts: 1 });
    expect(p.ranks[6]!.env).toEqual({
      ...common(6, 6, 0, 6, 8, 'tensorflow', 1),
      ASCEND_DEVICE_ID: '6',
      DEVICE_ID: '6',
      RANK_TABLE_FILE: TABLE,
      RANK_ID: '6',
      RANK_SIZE: '8',
      JOB_ID: RUN,
    });
    expect(p.rankTable?.server_list).toHaveLength(1);
  });

  it('4 hosts x 2', () => {
    const p = plan({ profile: 'tensorflow', hosts: 4, flags: { nprocPerNode: 2 } });
    expect(p.ranks[7]!.env).toEqual({
      ...common(7, 1, 3, 1, 8, 'tensorflow', 4),
      ASCEND_DEVICE_ID: '1',
      DEVICE_ID: '1',
      RANK_TABLE_FILE: TABLE,
      RANK_ID: '7',
      RANK_SIZE: '8',
      JOB_ID: RUN,
    });
  });

  it('JOB_ID keeps to letters, digits, - and _, and is never a number starting with 0', () => {
    expect(jobId('20261123-052433-resnext101-a1b2')).toBe('20261123-052433-resnext101-a1b2');
    expect(jobId('run id/1')).toBe('run-id-1');
    expect(jobId('0123')).toBe('npurun-0123');
  });
});

describe('torch profile', () => {
  it('1 host x 8: no rank table; ASCEND_RT_VISIBLE_DEVICES lists the chosen devices, LOCAL_RANK indexes them', () => {
    const p = plan({ profile: 'torch', hosts: 1 });
    expect(p.rankTable).toBeUndefined();
    expect(p.rankTablePath).toBeUndefined();
    expect(p.ranks[2]!.env).toEqual({
      ...common(2, 2, 0, 2, 8, 'torch', 1),
      MASTER_ADDR: '10.0.0.11',
      MASTER_PORT: '29500',
      RANK: '2',
      WORLD_SIZE: '8',
      LOCAL_RANK: '2',
      LOCAL_WORLD_SIZE: '8',
      NODE_RANK: '0',
      GROUP_RANK: '0',
      ROLE_RANK: '2',
      ROLE_WORLD_SIZE: '8',
      ASCEND_RT_VISIBLE_DEVICES: '0,1,2,3,4,5,6,7',
    });
  });

  it('4 hosts x 2 with --master-port', () => {
    const p = plan({ profile: 'torch', hosts: 4, flags: { nprocPerNode: 2, masterPort: 29999 } });
    expect(p.ranks[6]!.env).toEqual({
      ...common(6, 0, 3, 0, 8, 'torch', 4),
      MASTER_ADDR: '10.0.0.11',
      MASTER_PORT: '29999',
      RANK: '6',
      WORLD_SIZE: '8',
      LOCAL_RANK: '0',
      LOCAL_WORLD_SIZE: '2',
      NODE_RANK: '3',
      GROUP_RANK: '3',
      ROLE_RANK: '6',
      ROLE_WORLD_SIZE: '8',
      ASCEND_RT_VISIBLE_DEVICES: '0,1',
    });
  });

  it('CPU-only hosts run with --nproc-per-node: no device', () => {
    const p = plan({ profile: 'torch', hosts: 2, flags: { nprocPerNode: 3 }, tweak: (_i, f) => (f.devices = []) });
    expect(p.ranks.map((r) => [r.rank, r.deviceId, r.env.NPURUN_DEVICE_ID])).toEqual(
      [0, 1, 2, 3, 4, 5].map((r) => [r, null, '']),
    );
    expect(p.ranks[4]!.cwd).toBe('/work/train_parallel4');
  });

  it('CPU-only hosts without --nproc-per-node are refused with the hint', () => {
    const err = errorOf(() => plan({ profile: 'torch', hosts: 1, tweak: (_i, f) => (f.devices = []) }));
    expect([err.kind, err.message, err.hint]).toEqual([
      'not-ready',
      'host h1: no NPUs found (npu-smi listed none)',
      'for a CPU-only run give --nproc-per-node',
    ]);
  });
});

describe('msrun profile', () => {
  it('1 host x 8: a scheduler first, then the workers', () => {
    const p = plan({ profile: 'msrun', hosts: 1 });
    expect(p.ranks.map((r) => `${r.label}:${r.role}:${r.deviceId}`)).toEqual([
      'sched:scheduler:null',
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((r) => `${r}:rank:${r}`),
    ]);
    expect(p.rankTable).toBeUndefined();
    const msrun = { MS_SCHED_HOST: '10.0.0.11', MS_SCHED_PORT: '8118', MS_WORKER_NUM: '8', RANK_SIZE: '8' };
    // As msrun starts it: the scheduler has no MS_NODE_ID and no device.
    expect(p.ranks[0]!.env).toEqual({ ...common(-1, -1, 0, '', 8, 'msrun', 1), ...msrun, MS_ROLE: 'MS_SCHED' });
    expect(p.ranks[0]!.cpus).toEqual([]);
    expect(p.ranks[8]!.env).toEqual({
      ...common(7, 7, 0, 7, 8, 'msrun', 1),
      ...msrun,
      MS_ROLE: 'MS_WORKER',
      MS_NODE_ID: '7',
      DEVICE_ID: '7',
      ASCEND_RT_VISIBLE_DEVICES: '0,1,2,3,4,5,6,7',
    });
    expect(p.ranks[0]!.cwd).toBe('/work/train_parallelsched');
  });

  it('4 hosts x 2: the scheduler only on the first host; DEVICE_ID is the local index', () => {
    const p = plan({ profile: 'msrun', hosts: 4, flags: { devices: '6,7' } });
    expect(p.ranks.map((r) => `${r.label}@${r.host}`)).toEqual([
      'sched@h1',
      '0@h1',
      '1@h1',
      '2@h2',
      '3@h2',
      '4@h3',
      '5@h3',
      '6@h4',
      '7@h4',
    ]);
    expect(p.ranks[6]!.env).toMatchObject({
      MS_ROLE: 'MS_WORKER',
      MS_NODE_ID: '5',
      DEVICE_ID: '1',
      NPURUN_DEVICE_ID: '7',
      MS_WORKER_NUM: '8',
      MS_SCHED_HOST: '10.0.0.11',
    });
    // Local index 1 of "6,7" is physical device 7: msrun's DEVICE_ID is logical.
    expect(p.ranks[6]!.env.ASCEND_RT_VISIBLE_DEVICES).toBe('6,7');
    expect(p.ranks[0]!.env.ASCEND_RT_VISIBLE_DEVICES).toBeUndefined();
  });
});

describe('ASCEND_RT_VISIBLE_DEVICES for profiles that pick the device by local index', () => {
  it('torch on devices 2,5,7: the rank with LOCAL_RANK i runs on the i-th listed device', () => {
    const p = plan({ profile: 'torch', hosts: 2, flags: { devices: '2,5,7' } });
    expect(p.ranks.map((r) => [r.env.LOCAL_RANK, r.env.ASCEND_RT_VISIBLE_DEVICES, r.deviceId])).toEqual([
      ['0', '2,5,7', 2],
      ['1', '2,5,7', 5],
      ['2', '2,5,7', 7],
      ['0', '2,5,7', 2],
      ['1', '2,5,7', 5],
      ['2', '2,5,7', 7],
    ]);
  });

  it('auto leaves the unhealthy and held devices out of the list, per host', () => {
    const p = plan({
      profile: 'msrun',
      hosts: 2,
      flags: { nprocPerNode: 6 },
      tweak: (i, f) => {
        f.devices[i === 1 ? 3 : 0]!.health = 'Warning';
        f.devices[5]!.processes = [{ pid: 1 }];
      },
    });
    const workers = p.ranks.filter((r) => r.role === 'rank');
    expect(workers.filter((r) => r.host === 'h1').map((r) => `${r.env.DEVICE_ID}:${r.deviceId}`)).toEqual([
      '0:0',
      '1:1',
      '2:2',
      '3:4',
      '4:6',
      '5:7',
    ]);
    expect(workers[0]!.env.ASCEND_RT_VISIBLE_DEVICES).toBe('0,1,2,4,6,7');
    expect(workers[6]!.env.ASCEND_RT_VISIBLE_DEVICES).toBe('1,2,3,4,6,7');
  });

  it('npu-smi listing devices out of order still gives ascending ids and ranks', () => {
    const p = plan({ profile: 'torch', hosts: 1, tweak: (_i, f) => f.devices.reverse() });
    expect(p.ranks.map((r) => r.deviceId)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("not for rank-table profiles (DEVICE_ID is physical), not on CPU-only hosts; the user's value wins", () => {
    expect(
      plan({ profile: 'mindspore', hosts: 1, flags: { devices: '4-7' } }).ranks[0]!.env.ASCEND_RT_VISIBLE_DEVICES,
    ).toBeUndefined();
    expect(plan({ profile: 'tensorflow', hosts: 1 }).ranks[0]!.env.ASCEND_RT_VISIBLE_DEVICES).toBeUndefined();
    expect(
      plan({ profile: 'torch', hosts: 1, flags: { nprocPerNode: 2 }, tweak: (_i, f) => (f.devices = []) }).ranks[0]!.env
        .ASCEND_RT_VISIBLE_DEVICES,
    ).toBeUndefined();
    const warnings: string[] = [];
    const p = plan({
      profile: 'torch',
      hosts: 1,
      flags: { devices: '0,1', env: ['ASCEND_RT_VISIBLE_DEVICES=4,5'] },
      input: { onWarning: (w) => warnings.push(w) },
    });
    expect(p.ranks[1]!.env.ASCEND_RT_VISIBLE_DEVICES).toBe('4,5');
    expect(warnings).toEqual([
      'host h1: ASCEND_RT_VISIBLE_DEVICES=4,5 (--env or the job file) replaces the devices npurun chose and checked (0,1)',
    ]);
  });
});

describe('this machine with simulated NPUs (the demo)', () => {
  it('8 simulated devices on the local host: loopback interface, rank table with the simulated device IPs', () => {
    const job = resolveJob(undefined, { command: ['python', 'train.py'], env: [], profile: 'mindspore' }, '/w');
    const local: HostSpec = { name: 'me', address: '127.0.0.1', local: true, devices: 'auto' };
    const simulated = simulatedHostFacts(8, { hostname: 'me' });
    const p = planRun({ runId: RUN, job, hosts: [local], facts: { me: simulated } });
    expect(p.ranks).toHaveLength(8);
    expect(p.rankTable?.server_list[0]?.server_id).toBe('127.0.0.1');
    expect(p.rankTable?.server_list[0]?.device.map((d) => d.device_ip)).toEqual(
      simulated.devices.map((d) => d.deviceIp),
    );
    expect(p.ranks[7]!.env).toMatchObject({
      RANK_ID: '7',
      DEVICE_ID: '7',
      RANK_SIZE: '8',
      GLOO_SOCKET_IFNAME: 'lo',
      HCCL_IF_IP: '127.0.0.1',
    });
  });
});

describe('network interfaces for gloo and HCCL', () => {
  it('a local-only run uses lo and 127.0.0.1', () => {
    const job = resolveJob(undefined, { command: ['x'], env: [], profile: 'torch' }, '/w');
    const local: HostSpec = { name: 'me', address: '127.0.0.1', local: true, devices: 'auto' };
    const p = planRun({ runId: RUN, job, hosts: [local], facts: { me: facts(1, 2) } });
    expect(p.ranks[0]!.env).toMatchObject({
      GLOO_SOCKET_IFNAME: 'lo',
      HCCL_SOCKET_IFNAME: 'lo',
      HCCL_IF_IP: '127.0.0.1',
      MASTER_ADDR: '127.0.0.1',
    });
  });

  it('the interface holding the inventory address, not the first one', () => {
    const p = plan({
      profile: 'torch',
      hosts: 1,
      tweak: (_i, f) =>
        f.interfaces.unshift(
          { name: 'docker0', addresses: ['172.17.0.1'] },
          { name: 'ib0', addresses: ['10.9.0.1', '10.0.0.11'] },
        ),
    });
    expect(p.ranks[0]!.env).toMatchObject({
      GLOO_SOCKET_IFNAME: 'ib0',
      HCCL_SOCKET_IFNAME: 'ib0',
      HCCL_IF_IP: '10.0.0.11',
    });
  });

  it('an address on none of the host interfaces is a preflight failure naming what the host has', () => {
    const err = errorOf(() =>
      plan({
        profile: 'torch',
        hosts: 2,
        tweak: (i, f) => i === 2 && (f.interfaces = [{ name: 'eth1', addresses: ['10.9.9.9'] }]),
      }),
    );
    expect([err.kind, err.message]).toEqual([
      'not-ready',
      'host h2: its inventory address 10.0.0.12 is on none of its interfaces (eth1 10.9.9.9)',
    ]);
  });

  it('a host listed by name cannot be matched to an interface: it must be listed by IP', () => {
    const err = errorOf(() => plan({ profile: 'torch', hosts: 1, tweak: (_i, _f, h) => (h.address = 'node1') }));
    expect(err.message).toBe(
      'host h1: its inventory address "node1" is a name, not one of its IPv4 addresses (lo 127.0.0.1; eth0 10.0.0.11)',
    );
  });

  it('the user may name the interfaces instead', () => {
    const p = plan({
      profile: 'torch',
      hosts: 1,
      flags: { env: ['GLOO_SOCKET_IFNAME=ib0', 'HCCL_SOCKET_IFNAME=ib0'] },
      tweak: (_i, f) => (f.interfaces = []),
    });
    expect(p.ranks[0]!.env).toMatchObject({ GLOO_SOCKET_IFNAME: 'ib0', HCCL_SOCKET_IFNAME: 'ib0' });
    expect(p.ranks[0]!.env.HCCL_IF_IP).toBeUndefined();
  });
});

describe('preflight refusals name the host and the device', () => {
  it.each<[string, Layout, string]>([
    [
      'held',
      {
        profile: 'mindspore',
        hosts: 2,
        flags: { devices: '0-3' },
        tweak: (i, f) => i === 2 && (f.devices[2]!.processes = [{ pid: 42 }, { pid: 43 }]),
      },
      'host h2: device 2 held by pid 42, 43',
    ],
    [
      'unhealthy',
      { profile: 'mindspore', hosts: 1, flags: { devices: '0-3' }, tweak: (_i, f) => (f.devices[1]!.health = 'Alarm') },
      'host h1: device 1 health is Alarm',
    ],
    [
      'no device IP',
      { profile: 'tensorflow', hosts: 1, flags: { devices: '0' }, tweak: (_i, f) => delete f.devices[0]!.deviceIp },
      'host h1: device 0 has no device IP (hccn.conf / hccn_tool)',
    ],
    [
      'missing',
      { profile: 'torch', hosts: 1, flags: { devices: '7' }, tweak: (_i, f) => (f.devices = f.devices.slice(0, 4)) },
      'host h1: device 7 not found (npu-smi lists 0, 1, 2, 3)',
    ],
    [
      'too few',
      { profile: 'mindspore', hosts: 1, flags: { nprocPerNode: 9 } },
      'host h1: 9 ranks asked, but only 8 usable devices (0, 1, 2, 3, 4, 5, 6, 7)',
    ],
  ])('%s', (_name, layout, message) => {
    const err = errorOf(() => plan(layout));
    expect([err.kind, err.message]).toEqual(['not-ready', message]);
  });

  it('a device without IP is fine for profiles without a rank table', () => {
    expect(
      plan({ profile: 'torch', hosts: 1, flags: { devices: '0' }, tweak: (_i, f) => delete f.devices[0]!.deviceIp })
        .ranks,
    ).toHaveLength(1);
  });

  it('auto skips unhealthy and held devices', () => {
    const p = plan({
      profile: 'torch',
      hosts: 1,
      tweak: (_i, f) => {
        f.devices[3]!.health = 'Warning';
        f.devices[5]!.processes = [{ pid: 1 }];
      },
    });
    expect(p.ranks.map((r) => r.deviceId)).toEqual([0, 1, 2, 4, 6, 7]);
  });

  it('hosts with different rank counts are refused as input', () => {
    const err = errorOf(() =>
      plan({ profile: 'torch', hosts: 2, tweak: (i, f) => i === 2 && (f.devices = f.devices.slice(0, 4)) }),
    );
    expect(err.kind).toBe('input');
    expect(err.message).toMatch(/hosts would run different numbers of ranks \(h1: 8, h2: 4\)/);
  });

  it('910 device groups: ranges crossing 0-3/4-7 are refused for rank-table profiles', () => {
    expect(errorOf(() => plan({ profile: 'mindspore', hosts: 1, flags: { devices: '2-5' } })).message).toMatch(
      /host h1: devices 2,3,4,5 cross the 910 device groups/,
    );
    expect(plan({ profile: 'torch', hosts: 1, flags: { devices: '2-5' } }).ranks).toHaveLength(4);
  });

  it('a rank table needs IPv4 server ids: a host name is refused with the fix', () => {
    const err = errorOf(() =>
      plan({
        profile: 'mindspore',
        hosts: 1,
        flags: { env: ['GLOO_SOCKET_IFNAME=eth0', 'HCCL_SOCKET_IFNAME=eth0'] },
        tweak: (_i, _f, h) => (h.address = 'server-a'),
      }),
    );
    expect([err.kind, err.message]).toEqual([
      'input',
      'host h1: address "server-a" is not an IPv4 address; the rank table\'s server_id must be the server\'s IP: put it in the hosts file',
    ]);
  });

  it('a host without preflight facts', () => {
    const job = resolveJob(undefined, { command: ['x'], env: [], profile: 'torch' }, '/w');
    expect(errorOf(() => planRun({ runId: RUN, job, hosts: [host(1)], facts: {} })).message).toBe(
      'host h1: preflight found nothing about it (no facts)',
    );
  });
});

describe('a rank table given by the user', () => {
  const table = (servers: [string, number[]][], ipFor = (s: number, d: number) => `192.168.${100 + d}.${11 + s}`) =>
    generateRankTable(
      servers.map(([serverId, ids], s) => ({
        serverId,
        devices: ids.map((d) => ({ deviceId: d, deviceIp: ipFor(s, d) })),
      })),
    );

  it('decides devices and rank ids, and is copied as given', () => {
    // Servers listed in the other order: rank ids come from the table, not the inventory.
    const given = table(
      [
        ['10.0.0.12', [0, 1]],
        ['10.0.0.11', [2, 3]],
      ],
      (s, d) => `192.168.${100 + d}.${12 - s}`,
    );
    const p = plan({ profile: 'mindspore', hosts: 2, input: { rankTable: given } });
    expect(p.ranks.map((r) => `${r.rank}@${r.host}:${r.deviceId}`)).toEqual(['2@h1:2', '3@h1:3', '0@h2:0', '1@h2:1']);
    expect(p.rankTable).toBe(given);
    expect(p.ranks[0]!.env).toMatchObject({ RANK_ID: '2', DEVICE_ID: '2', RANK_TABLE_FILE: TABLE });
  });

  it.each<[string, Partial<Layout>, [string, number[]][], RegExp]>([
    [
      'a server not in the inventory',
      {},
      [
        ['10.0.0.11', [0, 1]],
        ['10.0.0.99', [0, 1]],
      ],
      /t\.json: server_list\[1\]\.server_id: "10\.0\.0\.99" is not in the inventory \(10\.0\.0\.11, 10\.0\.0\.12\); expected exactly/,
    ],
    [
      'a host missing from the table',
      {},
      [['10.0.0.11', [0, 1]]],
      /t\.json: server_list: has no server_id 10\.0\.0\.12 for host h2; expected one entry per inventory host/,
    ],
    [
      'other devices than --devices',
      { flags: { devices: '0,1' } },
      [
        ['10.0.0.11', [0, 1]],
        ['10.0.0.12', [2, 3]],
      ],
      /t\.json: server_list\[1\]: lists devices 2,3 for host h2, but --devices asks for 0,1; expected the same devices/,
    ],
    [
      'another count than --nproc-per-node',
      { flags: { nprocPerNode: 4 } },
      [
        ['10.0.0.11', [0, 1]],
        ['10.0.0.12', [0, 1]],
      ],
      /server_list\[0\]: has 2 devices for host h1, but --nproc-per-node asks for 4/,
    ],
  ])('refuses %s', (_name, layout, servers, message) => {
    const err = errorOf(() =>
      plan({
        profile: 'mindspore',
        hosts: 2,
        ...layout,
        flags: { rankTable: '/x/t.json', ...layout.flags },
        input: { rankTable: table(servers) },
      }),
    );
    expect(err.kind).toBe('input');
    expect(err.message).toMatch(message);
  });

  it('refuses a device IP the host does not have, and held devices', () => {
    const wrongIp = table([['10.0.0.11', [0]]], () => '1.2.3.4');
    expect(
      errorOf(() =>
        plan({ profile: 'mindspore', hosts: 1, flags: { rankTable: '/x/t.json' }, input: { rankTable: wrongIp } }),
      ).message,
    ).toBe(
      "/x/t.json: server_list[0].device[0].device_ip: is 1.2.3.4, but host h1 reports 192.168.100.11 for device 0; expected the device's address (hccn.conf)",
    );
    const held = errorOf(() =>
      plan({
        profile: 'mindspore',
        hosts: 1,
        tweak: (_i, f) => (f.devices[0]!.processes = [{ pid: 7 }]),
        input: { rankTable: table([['10.0.0.11', [0]]]) },
      }),
    );
    expect([held.kind, held.message]).toEqual(['not-ready', 'host h1: device 0 held by pid 7']);
  });

  it('is refused for profiles that use none', () => {
    expect(
      errorOf(() => plan({ profile: 'torch', hosts: 1, input: { rankTable: table([['10.0.0.11', [0]]]) } })).message,
    ).toMatch(/profile torch uses no rank table/);
  });
});

describe('working directories, checkpoints and user environment', () => {
  it('rank_dir placeholders {rank} {local_rank} {device} {host} {node_rank}', () => {
    const p = plan({
      profile: 'torch',
      hosts: 2,
      flags: { nprocPerNode: 2, devices: '3,4', rankDir: 'out/{host}/n{node_rank}/r{rank}-l{local_rank}-d{device}' },
    });
    expect(p.ranks.map((r) => r.cwd)).toEqual([
      '/work/out/h1/n0/r0-l0-d3',
      '/work/out/h1/n0/r1-l1-d4',
      '/work/out/h2/n1/r2-l0-d3',
      '/work/out/h2/n1/r3-l1-d4',
    ]);
  });

  it('the checkpoint policy reaches every rank; with master_only only rank 0 saves', () => {
    const job = resolveJob(undefined, { command: ['x'], env: [], profile: 'torch', nprocPerNode: 2 }, '/w');
    job.checkpoint = {
      interval: 5,
      unit: 'step',
      keepMax: 3,
      masterOnly: true,
      dir: 'ck_{rank}_{host}',
      pattern: 'model-{step}.pt',
    };
    const p = planRun({ runId: RUN, job, hosts: [host(1), host(2)], facts: { h1: facts(1), h2: facts(2) } });
    expect(p.ranks.map((r) => [r.env.NPURUN_CKPT_SAVE, r.env.NPURUN_CKPT_DIR])).toEqual([
      ['1', 'ck_0_h1'],
      ['0', 'ck_1_h1'],
      ['0', 'ck_2_h2'],
      ['0', 'ck_3_h2'],
    ]);
    expect(p.ranks[3]!.env).toMatchObject({
      NPURUN_CKPT_INTERVAL: '5',
      NPURUN_CKPT_UNIT: 'step',
      NPURUN_CKPT_KEEP_MAX: '3',
      NPURUN_CKPT_MASTER_ONLY: '1',
      NPURUN_CKPT_PATTERN: 'model-{step}.pt',
    });
    job.checkpoint.masterOnly = false;
    expect(
      planRun({ runId: RUN, job, hosts: [host(1)], facts: { h1: facts(1) } }).ranks.map((r) => r.env.NPURUN_CKPT_SAVE),
    ).toEqual(['1', '1']);
  });

  it('no checkpoint policy, no NPURUN_CKPT_*', () => {
    expect(
      Object.keys(plan({ profile: 'torch', hosts: 1 }).ranks[0]!.env).filter((k) => k.startsWith('NPURUN_CKPT')),
    ).toEqual([]);
  });

  it('resume: each rank its own checkpoint (else the fallback), and the resume argument', () => {
    const job = resolveJob(
      undefined,
      { command: ['python', 't.py'], env: [], profile: 'torch', nprocPerNode: 2 },
      '/w',
    );
    job.resumeArg = '--from={path}';
    const p = planRun({
      runId: RUN,
      job,
      hosts: [host(1)],
      facts: { h1: facts(1) },
      resume: { byLabel: { '0': '/c/r0.ckpt' }, fallback: '/c/any.ckpt', epoch: 5, step: 50 },
    });
    expect(p.ranks.map((r) => [r.argv, r.env.NPURUN_RESUME_CKPT, r.env.NPURUN_RESUME_STEP])).toEqual([
      [['python', 't.py', '--from=/c/r0.ckpt'], '/c/r0.ckpt', '50'],
      [['python', 't.py', '--from=/c/any.ckpt'], '/c/any.ckpt', '50'],
    ]);
  });

  // The plan only; that such values arrive byte for byte in ranks over SSH is checked in launch-cluster.test.ts.
  it("hostile values are in every rank's planned env and argv unchanged, and the user wins over the profile", () => {
    const values = [
      `it's "quoted"`,
      'two  spaces ',
      '$(rm -rf /)',
      '`id`',
      'line1\nline2\r\n',
      'ümlaut 日本 🚀',
      '\\back\\slash',
      '',
      'a=b',
    ];
    const env = values.map((v, i) => `V${i}=${v}`);
    const p = plan({
      profile: 'mindspore',
      hosts: 2,
      flags: { nprocPerNode: 2, env: [...env, 'RANK_ID=99', 'HCCL_IF_IP=10.1.1.1'] },
    });
    for (const r of p.ranks) {
      values.forEach((v, i) => expect(r.env[`V${i}`]).toBe(v));
      expect([r.env.RANK_ID, r.env.HCCL_IF_IP]).toEqual(['99', '10.1.1.1']);
    }
    const argv = ['python', '-c', values.join('|')];
    const q = plan({ profile: 'torch', hosts: 1, flags: { command: argv } });
    expect(q.ranks[0]!.argv).toEqual(argv);
  });

  it('NPURUN_* in a hand-built job is refused too', () => {
    const job = resolveJob(undefined, { command: ['x'], env: [], profile: 'torch' }, '/w');
    job.env.NPURUN_RANK = '5';
    expect(errorOf(() => planRun({ runId: RUN, job, hosts: [host(1)], facts: { h1: facts(1) } })).message).toMatch(
      /^flags: env\.NPURUN_RANK: NPURUN_\* variables are set by npurun itself/,
    );
  });
});

describe('CPU binding', () => {
  const nodes = (n: number, per: number) =>
    Array.from({ length: n }, (_, k) => ({ node: k, cpus: Array.from({ length: per }, (_, c) => k * per + c) }));
  const summary = (sets: number[][]) => sets.map((s) => `${s[0]}+${s.length}`);

  it('one NUMA node: 1/N of the cores each, in order, like run_distribute_train.sh', () => {
    const cpus = [...Array(96).keys()];
    expect(summary(splitCpus(cpus, nodes(1, 96), 8).sets)).toEqual([
      '0+12',
      '12+12',
      '24+12',
      '36+12',
      '48+12',
      '60+12',
      '72+12',
      '84+12',
    ]);
    expect(splitCpus([0, 1, 2, 3, 4], [], 2)).toEqual({
      sets: [
        [0, 1],
        [2, 3],
      ],
    });
  });

  it('two NUMA nodes of 96: ranks 0-3 on node 0, 4-7 on node 1, 24 cores each', () => {
    const split = splitCpus([...Array(192).keys()], nodes(2, 96), 8);
    expect(summary(split.sets)).toEqual(['0+24', '24+24', '48+24', '72+24', '96+24', '120+24', '144+24', '168+24']);
    expect(split.warning).toBeUndefined();
  });

  it('each rank stays inside one node when its share fits, even with interleaved CPU numbering', () => {
    // Node 0 holds the even CPUs, node 1 the odd ones (a common BIOS numbering).
    const interleaved = [
      { node: 0, cpus: [0, 2, 4, 6, 8, 10, 12, 14] },
      { node: 1, cpus: [1, 3, 5, 7, 9, 11, 13, 15] },
    ];
    expect(splitCpus([...Array(16).keys()], interleaved, 4).sets).toEqual([
      [0, 2, 4, 6],
      [8, 10, 12, 14],
      [1, 3, 5, 7],
      [9, 11, 13, 15],
    ]);
    // 6 ranks of 2 cores on nodes of 8 and 4 online CPUs: node 1's offline CPUs are left out.
    expect(splitCpus([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], nodes(2, 8), 6).sets).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
      [8, 9],
      [10, 11],
    ]);
  });

  it('a share larger than a node straddles nodes, in node order', () => {
    expect(summary(splitCpus([...Array(192).keys()], nodes(2, 96), 1).sets)).toEqual(['0+192']);
    expect(summary(splitCpus([...Array(192).keys()], nodes(2, 96), 3).sets)).toEqual(['0+64', '64+64', '128+64']);
  });

  it('fewer cores than ranks: shared round-robin, with a warning', () => {
    expect(splitCpus([0, 1], [], 4)).toEqual({
      sets: [[0], [1], [0], [1]],
      warning: '4 ranks share 2 CPUs round-robin',
    });
    expect(splitCpus([], [], 2)).toEqual({
      sets: [[], []],
      warning: 'the host reported no CPUs: ranks are not pinned',
    });
  });

  it('the plan pins ranks only with bind_cores, and reports sharing to onWarning', () => {
    expect(plan({ profile: 'mindspore', hosts: 1 }).ranks.every((r) => r.cpus.length === 0)).toBe(true);
    expect(plan({ profile: 'mindspore', hosts: 1, flags: { bindCores: true } }).ranks.map((r) => r.cpus)).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
      [8, 9],
      [10, 11],
      [12, 13],
      [14, 15],
    ]);
    const warnings: string[] = [];
    plan({
      profile: 'mindspore',
      hosts: 1,
      flags: { bindCores: true },
      tweak: (_i, f) => ((f.cpus = [0, 1, 2, 3]), (f.numaNodes = [])),
      input: { onWarning: (w) => warnings.push(w) },
    });
    expect(warnings).toEqual(['host h1: 8 ranks share 4 CPUs round-robin']);
  });
});

describe('run ids', () => {
  it('sortable UTC time, the sanitized job name and 4 random hex digits', () => {
    const at = new Date(Date.UTC(2026, 10, 23, 5, 24, 33));
    expect(newRunId(at, 'ResNeXt101 ImageNet!')).toMatch(/^20261123-052433-resnext101-imagenet-[0-9a-f]{4}$/);
    expect(newRunId(at)).toMatch(/^20261123-052433-[0-9a-f]{4}$/);
    expect(newRunId(at, '---')).toMatch(/^20261123-052433-[0-9a-f]{4}$/);
    const ids = [
      newRunId(new Date(Date.UTC(2026, 0, 2, 3, 4, 5)), 'b'),
      newRunId(new Date(Date.UTC(2026, 0, 2, 13, 4, 5)), 'a'),
    ];
    expect([...ids].sort()).toEqual(ids);
  });
});

describe('describePlan for --dry-run', () => {
  it('groups ranks by host with device, CPUs, cwd, argv quoted for display and every variable', () => {
    const p = plan({
      profile: 'torch',
      hosts: 2,
      flags: { nprocPerNode: 1, bindCores: true, command: ['python', 'a b.py', `it's`], env: ['X=line1\nline2'] },
    });
    const text = describePlan(p);
    const lines = text.split('\n');
    expect(lines[0]).toBe(`run ${RUN}: profile torch, 2 ranks on 2 hosts, master 10.0.0.11:29500`);
    expect(lines).toContain('host h1 (ssh root@10.0.0.11:22), address 10.0.0.11');
    const h2 = lines.indexOf('host h2 (ssh root@10.0.0.12:22 via login), address 10.0.0.12');
    expect(h2).toBeGreaterThan(0);
    expect(lines[h2 + 1]).toBe('  rank 1: device 0, cpus 0-15, cwd /work/train_parallel1');
    expect(lines[h2 + 2]).toBe(`    command: python 'a b.py' 'it'\\''s'`);
    expect(lines).toContain(`    X=$'line1\\nline2'`);
    for (const k of Object.keys(p.ranks[1]!.env))
      expect(lines.slice(h2).some((l) => l.startsWith(`    ${k}=`))).toBe(true);
  });

  it("quotes for display: bare when safe, single quotes, $'..' for control characters", () => {
    expect(['abc', 'a b', '', `a'b`, 'a\tb\x01', 'ü'].map(quoteForDisplay)).toEqual([
      'abc',
      `'a b'`,
      `''`,
      `'a'\\''b'`,
      `$'a\\tb\\x01'`,
      `'ü'`,
    ]);
  });
});

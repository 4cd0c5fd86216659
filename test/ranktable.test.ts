import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseHccnConf } from '../src/devices/npu-smi.js';
import {
  generateRankTable,
  mergeRankTables,
  rankTableFileName,
  serializeRankTable,
} from '../src/ranktable/generate.js';
import type { RankTable } from '../src/ranktable/types.js';
import { groupingProblem, validateRankTable } from '../src/ranktable/validate.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const json = (name: string) =>
  JSON.parse(fixture(name)) as Record<string, unknown> & {
    server_list: { server_id: string; host_ip?: string; device: Record<string, unknown>[] }[];
    super_pod_list: { super_pod_id: string; server_list: { server_id: string }[] }[];
  };

function server(conf: string, ip: string, ids: number[]) {
  const c = parseHccnConf(fixture(conf));
  return { serverId: ip, devices: ids.map((id) => ({ deviceId: id, deviceIp: c.get(id)!.address! })) };
}

describe('generate: what hccl_tools.py writes, byte for byte', () => {
  it.each([
    ['hccl_8p_01234567_10.155.111.140.json', 'hccn.conf.server-a', '10.155.111.140', [0, 1, 2, 3, 4, 5, 6, 7]],
    ['hccl_8p_01234567_10.155.111.141.json', 'hccn.conf.server-b', '10.155.111.141', [0, 1, 2, 3, 4, 5, 6, 7]],
    ['hccl_4p_0123_10.155.111.140.json', 'hccn.conf.server-a', '10.155.111.140', [0, 1, 2, 3]],
  ])('%s', (file, conf, ip, ids) => {
    const table = generateRankTable([server(conf, ip, ids)]);
    expect(serializeRankTable(table)).toBe(fixture(file));
    expect(rankTableFileName(table)).toBe(file);
  });
  it('[4,8) numbers ranks from 0 like hccl_tools', () => {
    expect(serializeRankTable(generateRankTable([server('hccn.conf.server-a', '10.155.111.140', [4, 5, 6, 7])]))).toBe(
      fixture('hccl_4p_4567_10.155.111.140.json'),
    );
  });
});

describe('merge: merge_hccl.py numbering, string ranks', () => {
  it('equals the merge fixture once its numeric rank ids are read as strings', () => {
    // A structural comparison (parsed JSON, rank ids as strings), not bytes: key order and spacing are not checked.
    const a = JSON.parse(fixture('hccl_8p_01234567_10.155.111.140.json')) as RankTable;
    const b = JSON.parse(fixture('hccl_8p_01234567_10.155.111.141.json')) as RankTable;
    const merged = mergeRankTables([a, b]);
    const expected = JSON.parse(fixture('hccl_2s_16p.merge_hccl.json')) as {
      server_list: { device: { rank_id: number }[] }[];
    };
    expect(typeof expected.server_list[0]!.device[0]!.rank_id).toBe('number');
    for (const s of expected.server_list)
      for (const d of s.device) (d as unknown as { rank_id: string }).rank_id = String(d.rank_id);
    expect(merged).toEqual(expected);
    expect(rankTableFileName(merged)).toBe('hccl_2s_16p.json');
    expect(validateRankTable(merged).problems).toEqual([]);
  });
  it("validate refuses merge_hccl's numeric ranks (HCCL's EI0017), naming each and the fix; --lenient warns instead", () => {
    const strict = validateRankTable(JSON.parse(fixture('hccl_2s_16p.merge_hccl.json')));
    expect(strict.table).toBeUndefined();
    expect(strict.problems).toHaveLength(16);
    expect(strict.problems[8]).toMatchObject({ path: 'server_list[1].device[0].rank_id' });
    expect(strict.problems[8]!.message).toMatch(
      /^a number \(as merge_hccl.py writes it\): HCCL's own parser takes only strings and fails at init with EI0017 .*write "8" \(as hccl_tools\.py and npurun ranktable merge do; --lenient accepts it, for old CANN\)$/,
    );
    const r = validateRankTable(JSON.parse(fixture('hccl_2s_16p.merge_hccl.json')), { lenient: true });
    expect(r.problems).toEqual([]);
    expect(r.warnings).toHaveLength(16);
    expect(r.warnings[0]!.message).toMatch(/a number \(as merge_hccl.py writes it\).*EI0017/);
    expect(r.table!.server_list[1]!.device[0]!.rank_id).toBe('8');
  });
});

describe('validate: every problem with its JSON path', () => {
  // merge_hccl.py's table with its rank ids written as strings, as HCCL wants them.
  const good = () => {
    const t = JSON.parse(fixture('hccl_2s_16p.merge_hccl.json')) as {
      [k: string]: unknown;
      server_list: { server_id: string; host_ip?: string; device: Record<string, unknown>[] }[];
    };
    for (const s of t.server_list) for (const d of s.device) d.rank_id = String(d.rank_id as number);
    return t;
  };
  const cases: [string, (t: ReturnType<typeof good>) => unknown, RegExp][] = [
    [
      'unknown version',
      (t) => ({ ...t, version: '2.0' }),
      /^version: unknown rank-table version "2.0"; HCCL documents "1.0" .* and "1.2" \(Atlas A3 SuperPoD\)/,
    ],
    ['version of the wrong type', (t) => ({ ...t, version: 1 }), /^version: expected "1.0", got number 1/],
    [
      'ranks interleaved across servers',
      (t) => {
        t.server_list[0]!.device[7]!.rank_id = '8';
        t.server_list[1]!.device[0]!.rank_id = '7';
        return t;
      },
      /^server_list\[0\]\.device: ranks 0,1,2,3,4,5,6,8 are not consecutive; HCCL does not support ranks interleaved across servers/,
    ],
    [
      'the same server twice',
      (t) => {
        t.server_list[1]!.server_id = t.server_list[0]!.server_id;
        return t;
      },
      /^server_list\[1\]\.server_id: "10.155.111.140" is also server_list\[0\]\.server_id/,
    ],
    [
      'a bad device_port',
      (t) => {
        t.server_list[0]!.device[0]!.device_port = 16666;
        return t;
      },
      /^server_list\[0\]\.device\[0\]\.device_port: expected string, got number 16666/,
    ],
    [
      'missing status',
      (t) => {
        delete t.status;
        return t;
      },
      /^status: missing/,
    ],
    [
      'server_count mismatch',
      (t) => ({ ...t, server_count: '3' }),
      /^server_count: says 3 but server_list has 2 servers/,
    ],
    [
      'wrong type',
      (t) => {
        t.server_list[0]!.device[1]!.device_id = 1;
        return t;
      },
      /^server_list\[0\]\.device\[1\]\.device_id: expected string, got number 1/,
    ],
    [
      'duplicate rank',
      (t) => {
        t.server_list[1]!.device[0]!.rank_id = '3';
        return t;
      },
      /rank 3 repeated/,
    ],
    [
      'gap',
      (t) => {
        t.server_list[1]!.device[7]!.rank_id = '20';
        return t;
      },
      /missing 15|out of range/,
    ],
    [
      'bad IP',
      (t) => {
        t.server_list[0]!.device[2]!.device_ip = '192.168.300.1';
        return t;
      },
      /^server_list\[0\]\.device\[2\]\.device_ip: expected an IPv4 address, got "192.168.300.1"/,
    ],
    [
      'hostname server_id',
      (t) => {
        t.server_list[0]!.server_id = 'node1';
        return t;
      },
      /server_id: expected the server's IPv4 address/,
    ],
    [
      'duplicate device ip',
      (t) => {
        t.server_list[1]!.device[0]!.device_ip = '192.168.100.101';
        return t;
      },
      /192.168.100.101 is also server_list\[0\]\.device\[0\]\.device_ip/,
    ],
    [
      'unknown key',
      (t) => {
        t.server_list[0]!.device[0]!.deviceid = '0';
        return t;
      },
      /unknown key "deviceid"/,
    ],
    [
      'pre-1.0 format of another shape',
      () => ({ board_id: '0x0000', group_list: [] }),
      /^group_list: pre-1.0 rank table/,
    ],
  ];
  it.each(cases)('%s', (_name, mutate, message) => {
    const r = validateRankTable(mutate(good()));
    expect(r.table).toBeUndefined();
    expect(r.problems.map((p) => `${p.path}: ${p.message}`).join('\n')).toMatch(message);
  });
  it('reads the pre-1.0 format (group_list / instance_list) as version 1.0, with a warning', () => {
    const pre = {
      status: 'completed',
      board_id: '0x0000',
      chip_info: '910',
      deploy_mode: 'lab',
      group_count: '1',
      group_list: [
        {
          group_name: '',
          device_num: '2',
          server_num: '1',
          instance_count: '2',
          instance_list: [
            { rank_id: '0', server_id: '10.0.0.10', devices: [{ device_id: '0', device_ip: '192.168.0.12' }] },
            { rank_id: '1', server_id: '10.0.0.10', devices: [{ device_id: '1', device_ip: '192.168.1.12' }] },
          ],
        },
      ],
    };
    const r = validateRankTable(pre);
    expect(r.problems).toEqual([]);
    expect(r.warnings[0]!.message).toMatch(/pre-1.0 rank-table format/);
    expect(r.table).toEqual({
      version: '1.0',
      server_count: '1',
      status: 'completed',
      server_list: [
        {
          server_id: '10.0.0.10',
          host_nic_ip: 'reserve',
          device: [
            { device_id: '0', device_ip: '192.168.0.12', rank_id: '0' },
            { device_id: '1', device_ip: '192.168.1.12', rank_id: '1' },
          ],
        },
      ],
    });
  });

  it('device groupings of 910 servers', () => {
    expect(groupingProblem([0, 1, 2])).toMatch(/3 devices on one server; HCCL on 910 servers takes 1, 2, 4 or 8/);
    expect(groupingProblem([3, 4])).toMatch(/cross the 910 device groups/);
    expect(groupingProblem([3, 4, 5, 6])).toMatch(
      /devices 3,4,5,6 cross the 910 device groups 0-3 and 4-7; use devices within one group, or all 8/,
    );
    expect(groupingProblem([2, 3])).toBeUndefined();
    expect(groupingProblem([4, 5, 6, 7])).toBeUndefined();
    expect(groupingProblem([0, 1, 2, 3, 4, 5, 6, 7])).toBeUndefined();
  });
  it('A3 servers (device ids up to 15) are not held to the 910 groups', () => {
    expect(groupingProblem([...Array(16).keys()])).toBeUndefined();
    expect(groupingProblem([6, 7, 8, 9])).toBeUndefined();
    expect(groupingProblem([15, 16])).toMatch(/go beyond 15/);
  });
  it('accepts the optional fields HCCL documents for version 1.0 on A2/A3 (host_ip, device_port, host_port)', () => {
    const t = good();
    t.server_list[0]!.host_ip = '10.155.111.140';
    t.server_list[0]!.device[0]!.device_port = '16667';
    t.server_list[0]!.device[0]!.host_port = '16666';
    const r = validateRankTable(t);
    expect(r.problems).toEqual([]);
    expect(r.table!.server_list[0]!.device[0]).toMatchObject({
      device_port: '16667',
      host_port: '16666',
      rank_id: '0',
    });
  });
});

describe('version 1.2 (Atlas A3 SuperPoD), fields as the HCCL user guide documents them', () => {
  // rank-table-1.2-superpod.json is hand-written from the HCCL guide's field list (test/fixtures/PROVENANCE-devices.md), not a captured table.
  it('reads a valid table: no 1.0 table, the SuperPoD form with string ranks', () => {
    const r = validateRankTable(json('rank-table-1.2-superpod.json'));
    expect(r.problems).toEqual([]);
    expect(r.table).toBeUndefined();
    expect(r.superPod!.server_list.map((s) => s.server_id)).toEqual(['a3-node-0', 'a3-node-1']);
    expect(r.superPod!.server_list[1]!.device[0]).toMatchObject({
      device_id: '0',
      super_device_id: '16',
      rank_id: '4',
    });
  });
  const cases: [string, (t: ReturnType<typeof json>) => unknown, RegExp][] = [
    [
      'a field HCCL does not document',
      (t) => {
        t.server_list[0]!.device[0]!.super_devce_id = '3';
        return t;
      },
      /^server_list\[0\]\.device\[0\]: unknown key "super_devce_id" \(did you mean "super_device_id"\?\)/,
    ],
    [
      'a SuperPoD naming an unknown server',
      (t) => {
        t.super_pod_list[0]!.server_list[1]!.server_id = 'a3-node-9';
        return t;
      },
      /^super_pod_list\[0\]\.server_list\[1\]\.server_id: "a3-node-9" is not a server_id of server_list/,
    ],
    [
      'a server in two SuperPoDs',
      (t) => {
        t.super_pod_list.push({ super_pod_id: '1', server_list: [{ server_id: 'a3-node-1' }] });
        return t;
      },
      /super_pod_list\[1\]\.server_list\[0\]\.server_id: server "a3-node-1" is already in SuperPoD "0"/,
    ],
    [
      'a super_device_id twice in one SuperPoD',
      (t) => {
        t.server_list[1]!.device[2]!.super_device_id = '1';
        return t;
      },
      /^server_list\[1\]\.device\[2\]\.super_device_id: 1 is also server_list\[0\]\.device\[1\]\.super_device_id, in the same SuperPoD "0"/,
    ],
    [
      'a bad host_ip',
      (t) => {
        t.server_list[0]!.host_ip = 'a3-node-0';
        return t;
      },
      /^server_list\[0\]\.host_ip: expected an IPv4 address, got "a3-node-0"/,
    ],
    [
      'a rank gap',
      (t) => {
        t.server_list[1]!.device[3]!.rank_id = '9';
        return t;
      },
      /rank ids must be 0\.\.7 without gaps; missing 7/,
    ],
  ];
  it.each(cases)('refuses %s', (_name, mutate, message) => {
    const r = validateRankTable(mutate(json('rank-table-1.2-superpod.json')));
    expect(r.superPod).toBeUndefined();
    expect(r.problems.map((p) => `${p.path}: ${p.message}`).join('\n')).toMatch(message);
  });
  it('SuperPoD servers listed apart from each other are refused, as HCCL refuses them', () => {
    const t = json('rank-table-1.2-superpod.json');
    const third = {
      server_id: 'a3-node-2',
      device: t.server_list[1]!.device.map((d, i) => ({
        ...d,
        super_device_id: String(40 + i),
        device_ip: `192.168.12.${20 + i}`,
        rank_id: String(8 + i),
      })),
    };
    t.server_list.push(third);
    t.server_count = '3';
    t.super_pod_list = [
      { super_pod_id: '0', server_list: [{ server_id: 'a3-node-0' }, { server_id: 'a3-node-2' }] },
      { super_pod_id: '1', server_list: [{ server_id: 'a3-node-1' }] },
    ];
    const r = validateRankTable(t);
    expect(r.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'super_pod_list[0].server_list: the servers of SuperPoD "0" must be listed together in server_list (they are at positions 0, 2)',
    ]);
  });
});

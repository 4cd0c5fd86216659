import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, NPURUN_BIN } from './helpers/cli-build.js';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'npurun-rt-cli-'));
const npurun = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [NPURUN_BIN, ...args], { reject: false, cwd: work, env: { NO_COLOR: '1', ...env } });

beforeAll(ensureBuilt);

describe('npurun ranktable as a process', () => {
  it('generate --simulate 8 --server-ip writes the hccl_tools file, which validate accepts', async () => {
    const r = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.155.111.140',
      '--out',
      work,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(join(work, 'hccl_8p_01234567_10.155.111.140.json'));
    const v = await npurun(['ranktable', 'validate', r.stdout.trim()]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout).toMatch(/valid rank table, 1 server, 8 ranks/);
  });

  it('generate --devices "[4,8)" names the file by the devices; "[3,6)" is refused like hccl_tools does', async () => {
    const ok = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.0.0.1',
      '--devices',
      '[4,8)',
      '--out',
      join(work, 'four.json'),
    ]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const table = JSON.parse(readFileSync(join(work, 'four.json'), 'utf8')) as {
      server_list: { device: { device_id: string; rank_id: string }[] }[];
    };
    expect(table.server_list[0]!.device.map((d) => `${d.device_id}:${d.rank_id}`)).toEqual([
      '4:0',
      '5:1',
      '6:2',
      '7:3',
    ]);
    const bad = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.0.0.1',
      '--devices',
      '[3,6)',
    ]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--devices: devices 3,4,5 cross the 910 device groups|3 devices on one server/);
    const noip = await npurun(['ranktable', 'generate', '--simulate', '8', '--server-ip', 'node1']);
    expect(noip.exitCode).toBe(2);
    expect(noip.stderr).toMatch(/--server-ip: "node1" is not an IPv4 address/);
  });

  it('generate from stand-in npu-smi / hccn_tool on PATH and a hccn.conf, like on a real server', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'npurun-tools-'));
    writeFileSync(join(bin, 'npu-smi'), `#!/bin/sh\ncat ${FIX}npu-smi-info-910b.txt\n`);
    writeFileSync(join(bin, 'hccn_tool'), '#!/bin/sh\necho "ipaddr:192.168.103.101"\n');
    chmodSync(join(bin, 'npu-smi'), 0o755);
    chmodSync(join(bin, 'hccn_tool'), 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}`, NPURUN_HCCN_CONF: `${FIX}hccn.conf.server-a` };
    // Devices 0-3 of server-a as hccl_tools.py writes them for "[0,4)".
    const r = await npurun(
      [
        'ranktable',
        'generate',
        '--devices',
        '[0,4)',
        '--server-ip',
        '10.155.111.140',
        '--out',
        join(work, 'real') + '/',
      ],
      env,
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(r.stdout.trim(), 'utf8')).toBe(readFileSync(`${FIX}hccl_4p_0123_10.155.111.140.json`, 'utf8'));
    // A device asked for that is held refuses to go into a table.
    const held = await npurun(
      [
        'ranktable',
        'generate',
        '--devices',
        '[4,8)',
        '--server-ip',
        '10.155.111.140',
        '--out',
        join(work, 'held') + '/',
      ],
      env,
    );
    expect(held.exitCode, held.stderr).toBe(0); // hccl_tools does not look at holders: generate writes, and warns
    expect(held.stderr).toMatch(/warning: this host: device 5 held by pid 271828; written into the rank table anyway/);
    expect(readFileSync(held.stdout.trim(), 'utf8')).toBe(
      readFileSync(`${FIX}hccl_4p_4567_10.155.111.140.json`, 'utf8'),
    );
    // Without a server IP, the address of the default route (this machine's), never 127.x.
    const auto = await npurun(['ranktable', 'generate', '--devices', '[0,2)', '--out', join(work, 'auto') + '/'], env);
    expect(auto.exitCode, auto.stderr).toBe(0);
    expect(auto.stdout.trim()).toMatch(/hccl_2p_01_(\d+\.\d+\.\d+\.\d+)\.json$/);
    expect(auto.stdout).not.toMatch(/_127\./);
  });

  it("generate --simulate 8 is byte-identical to hccl_tools.py; --device-ip-file takes server-b's addresses", async () => {
    const a = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.155.111.140',
      '--out',
      join(work, 'sim-a') + '/',
    ]);
    expect(readFileSync(a.stdout.trim(), 'utf8')).toBe(
      readFileSync(`${FIX}hccl_8p_01234567_10.155.111.140.json`, 'utf8'),
    );
    const b = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.155.111.141',
      '--device-ip-file',
      `${FIX}hccn.conf.server-b`,
      '--out',
      join(work, 'sim-b') + '/',
    ]);
    expect(b.exitCode, b.stderr).toBe(0);
    expect(readFileSync(b.stdout.trim(), 'utf8')).toBe(
      readFileSync(`${FIX}hccl_8p_01234567_10.155.111.141.json`, 'utf8'),
    );
    const missing = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.0.0.1',
      '--device-ip-file',
      join(work, 'nope.conf'),
    ]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/nope\.conf: cannot read the --device-ip-file: no such file or directory$/m);
  });

  it('generate --visible-devices maps logical to physical ids as hccl_tools does, and names the file by the logical ids', async () => {
    const r = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.155.111.140',
      '--visible-devices',
      '4,5,6,7',
      '--devices',
      '[0,4)',
      '--out',
      join(work, 'visible') + '/',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(join(work, 'visible', 'hccl_4p_0123_10.155.111.140.json'));
    expect(readFileSync(r.stdout.trim(), 'utf8')).toBe(readFileSync(`${FIX}hccl_4p_4567_10.155.111.140.json`, 'utf8'));
    const beyond = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.0.0.1',
      '--visible-devices',
      '4,5',
      '--devices',
      '[0,4)',
    ]);
    expect(beyond.exitCode).toBe(2);
    expect(beyond.stderr).toMatch(
      /--devices: logical device 2 is beyond --visible-devices \(2 visible: logical ids 0-1\)/,
    );
    const crossing = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.0.0.1',
      '--visible-devices',
      '2,3,4,5',
    ]);
    expect(crossing.exitCode).toBe(2);
    expect(crossing.stderr).toMatch(
      /--visible-devices: devices 2,3,4,5 cross the 910 device groups 0-3 and 4-7.*\(physical ids 2,3,4,5\)/,
    );
  });

  it('merge of the two 8p fixtures equals merge_hccl.py output, with string ranks', async () => {
    // A structural comparison (parsed JSON, rank ids as strings), not bytes: key order and spacing are not checked.
    const out = join(work, 'merged.json');
    const r = await npurun([
      'ranktable',
      'merge',
      `${FIX}hccl_8p_01234567_10.155.111.140.json`,
      `${FIX}hccl_8p_01234567_10.155.111.141.json`,
      '--out',
      out,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const expected = JSON.parse(readFileSync(`${FIX}hccl_2s_16p.merge_hccl.json`, 'utf8')) as {
      server_list: { device: { rank_id: unknown }[] }[];
    };
    for (const s of expected.server_list) for (const d of s.device) d.rank_id = String(d.rank_id);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(expected);
    const show = await npurun(['ranktable', 'show', out]);
    expect(show.stdout).toMatch(/10\.155\.111\.141\s+7\s+192\.168\.103\.110\s+15/);
    expect(show.stdout).toMatch(/2 servers, 16 ranks/);
  });

  const good = () =>
    JSON.parse(readFileSync(`${FIX}hccl_8p_01234567_10.155.111.140.json`, 'utf8')) as {
      [k: string]: unknown;
      server_list: { [k: string]: unknown; device: Record<string, unknown>[] }[];
    };
  const malformed: [string, () => string, RegExp][] = [
    ['bad JSON', () => '{\n  "version": "1.0",\n  "server_count": "1",,\n}', /not valid JSON at line 3, column \d+/],
    ['not an object', () => '[1, 2]', /\(top level\): expected a JSON object, got an? (array|list)/],
    [
      'wrong type',
      () => {
        const t = good();
        t.server_list[0]!.device[0]!.device_ip = 7;
        return JSON.stringify(t);
      },
      /server_list\[0\]\.device\[0\]\.device_ip: expected string, got number 7/,
    ],
    [
      'duplicate ranks',
      () => {
        const t = good();
        t.server_list[0]!.device[1]!.rank_id = '0';
        return JSON.stringify(t);
      },
      /server_list\[0\]\.device\[1\]\.rank_id: rank 0 repeated/,
    ],
    [
      'gap in ranks',
      () => {
        const t = good();
        t.server_list[0]!.device[7]!.rank_id = '9';
        return JSON.stringify(t);
      },
      /rank ids must be 0\.\.7 without gaps; missing 7/,
    ],
    [
      'bad IP',
      () => {
        const t = good();
        t.server_list[0]!.device[4]!.device_ip = '192.168.1';
        return JSON.stringify(t);
      },
      /device\[4\]\.device_ip: expected an IPv4 address, got "192\.168\.1"/,
    ],
    [
      'device count 3',
      () => {
        const t = good();
        t.server_list[0]!.device = t.server_list[0]!.device.slice(0, 3);
        return JSON.stringify(t);
      },
      /server_list\[0\]\.device: 3 devices on one server/,
    ],
    [
      'crossing groups',
      () => {
        const t = good();
        t.server_list[0]!.device = t.server_list[0]!.device.slice(2, 6).map((d, i) => ({ ...d, rank_id: String(i) }));
        return JSON.stringify(t);
      },
      /cross the 910 device groups 0-3 and 4-7/,
    ],
    [
      'unknown version',
      () => JSON.stringify({ ...good(), version: '2.0' }),
      /version: unknown rank-table version "2\.0"; HCCL documents "1\.0"/,
    ],
    [
      'ranks interleaved across servers',
      () => {
        const merged = JSON.parse(readFileSync(`${FIX}hccl_2s_16p.merge_hccl.json`, 'utf8')) as {
          server_list: { device: { rank_id: number }[] }[];
        };
        merged.server_list[0]!.device[7]!.rank_id = 8;
        merged.server_list[1]!.device[0]!.rank_id = 7;
        return JSON.stringify(merged);
      },
      /server_list\[0\]\.device: ranks 0,1,2,3,4,5,6,8 are not consecutive/,
    ],
    [
      'a 1.2 table whose SuperPoD names an unknown server',
      () => {
        const t = JSON.parse(readFileSync(`${FIX}rank-table-1.2-superpod.json`, 'utf8')) as {
          super_pod_list: { server_list: { server_id: string }[] }[];
        };
        t.super_pod_list[0]!.server_list[1]!.server_id = 'a3-node-7';
        return JSON.stringify(t);
      },
      /super_pod_list\[0\]\.server_list\[1\]\.server_id: "a3-node-7" is not a server_id of server_list/,
    ],
    [
      'missing status',
      () => {
        const t = good();
        delete t.status;
        return JSON.stringify(t);
      },
      /status: missing \(required\)/,
    ],
    [
      'server_count mismatch',
      () => JSON.stringify({ ...good(), server_count: '2' }),
      /server_count: says 2 but server_list has 1 server/,
    ],
    [
      'duplicate device ip',
      () => {
        const t = good();
        t.server_list[0]!.device[1]!.device_ip = t.server_list[0]!.device[0]!.device_ip;
        return JSON.stringify(t);
      },
      /device\[1\]\.device_ip: 192\.168\.100\.101 is also server_list\[0\]\.device\[0\]\.device_ip/,
    ],
    [
      'status not completed',
      () => JSON.stringify({ ...good(), status: 'initializing' }),
      /status: expected "completed", got string "initializing"/,
    ],
  ];
  it.concurrent.each(malformed)(
    'validate refuses %s: exit 2, message on stderr with the JSON path',
    async (name, text, message) => {
      const file = join(work, `${name.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, text());
      const r = await npurun(['ranktable', 'validate', file]);
      expect(r.exitCode).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(message);
      expect(r.stderr.startsWith(`${file}: `)).toBe(true);
    },
  );

  it('validate and show read a version 1.2 (Atlas A3 SuperPoD) table; merge refuses it', async () => {
    // rank-table-1.2-superpod.json is hand-written from the HCCL guide's field list (test/fixtures/PROVENANCE-devices.md), not a captured table.
    const file = `${FIX}rank-table-1.2-superpod.json`;
    const v = await npurun(['ranktable', 'validate', file]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stdout).toBe(`${file}: valid rank table (version 1.2, Atlas A3 SuperPoD), 2 servers, 8 ranks`);
    const show = await npurun(['ranktable', 'show', file]);
    expect(show.stdout).toMatch(/^server\s+device\s+device ip\s+rank\s+super device\s+super pod$/m);
    expect(show.stdout).toMatch(/^a3-node-1\s+3\s+192\.168\.11\.23\s+7\s+19\s+0$/m);
    expect(show.stdout).toMatch(/2 servers, 8 ranks \(version 1\.2, 1 SuperPoD\)/);
    const merge = await npurun(['ranktable', 'merge', file, file]);
    expect(merge.exitCode).toBe(2);
    expect(merge.stderr).toMatch(/a version 1\.2 \(Atlas A3 SuperPoD\) rank table; merge works on version 1\.0 tables/);
  });

  it("a merge_hccl.py table (numeric rank ids, HCCL's EI0017): validate and launch refuse it (exit 2, nothing started), validate --lenient warns", async () => {
    const file = `${FIX}hccl_2s_16p.merge_hccl.json`;
    const v = await npurun(['ranktable', 'validate', file]);
    expect(v.exitCode).toBe(2);
    expect(v.stderr).toMatch(
      /merge_hccl\.json: server_list\[0\]\.device\[0\]\.rank_id: a number .*EI0017.*write "0" \(as hccl_tools\.py and npurun ranktable merge do; --lenient accepts it, for old CANN\)/,
    );
    expect(v.stderr.split('\n').filter((l) => /EI0017/.test(l))).toHaveLength(16);
    const lenient = await npurun(['ranktable', 'validate', '--lenient', file]);
    expect(lenient.exitCode, lenient.stderr).toBe(0);
    expect(lenient.stderr).toMatch(/warning: server_list\[1\]\.device\[7\]\.rank_id: a number/);
    const launch = await npurun(['launch', '--simulate', '8', '--rank-table', file, '--dry-run', '--', 'true']);
    expect(launch.exitCode).toBe(2);
    expect(launch.stderr).toMatch(/invalid rank table[^]*EI0017/);
  });

  it('merge refuses tables whose union is invalid (the same server twice), naming the merged path', async () => {
    const a = `${FIX}hccl_8p_01234567_10.155.111.140.json`;
    const r = await npurun(['ranktable', 'merge', a, a, '--out', join(work, 'twice.json')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/the merged rank table would be invalid/);
    expect(r.stderr).toMatch(
      /merged server_list\[1\]\.server_id: "10\.155\.111\.140" is also server_list\[0\]\.server_id/,
    );
    const merged = await npurun(['ranktable', 'merge', a, `${FIX}hccl_8p_01234567_10.155.111.141.json`]);
    expect(merged.stdout.trim()).toBe(join(work, 'rank-tables', 'hccl_2s_16p.json'));
  });

  it('every subcommand has --help; a flag of another subcommand is a usage error', async () => {
    const subs = ['generate', 'merge', 'validate', 'show'];
    const [none, stray, ...helps] = await Promise.all([
      npurun(['ranktable']),
      npurun(['ranktable', 'generate', '--simulate', '8', '--json']),
      ...subs.map((sub) => npurun(['ranktable', sub, '--help'])),
    ]);
    helps.forEach((h, i) => {
      expect(h.exitCode).toBe(0);
      expect(h.stdout).toMatch(new RegExp(`^Usage: npurun ranktable ${subs[i]}`));
    });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toMatch(/Usage: npurun ranktable generate\|merge\|validate\|show/);
    expect(stray.exitCode).toBe(2);
    expect(stray.stderr).toMatch(/npurun ranktable generate: --json is not an option of generate/);
  });

  it('generate --hosts refuses before connecting: a bad inventory, a host listed by name, --server-ip with --hosts', async () => {
    const inventory = (name: string, text: string) => {
      writeFileSync(join(work, name), text);
      return join(work, name);
    };
    const typo = inventory('typo.yaml', 'hosts:\n  - { adress: 10.0.0.1 }\n');
    const [bad, named, both] = await Promise.all([
      npurun(['ranktable', 'generate', '--hosts', typo, '--ssh-config', '/dev/null']),
      npurun([
        'ranktable',
        'generate',
        '--hosts',
        inventory('named.yaml', 'hosts:\n  - { address: node1 }\n'),
        '--ssh-config',
        '/dev/null',
      ]),
      npurun(['ranktable', 'generate', '--hosts', typo, '--server-ip', '10.0.0.1']),
    ]);
    expect([bad.exitCode, named.exitCode, both.exitCode]).toEqual([2, 2, 2]);
    expect(bad.stderr).toMatch(
      /typo\.yaml: invalid hosts file: hosts\[0\]: unknown key "adress" \(did you mean "address"\?\)/,
    );
    expect(named.stderr).toMatch(
      /named\.yaml: host node1: address "node1" is not an IPv4 address; server_id must be the server's IP/,
    );
    expect(both.stderr).toMatch(/--server-ip: not with --hosts/);
  });

  it('usage errors: unknown subcommand, unknown flag, missing file all exit 2', async () => {
    expect((await npurun(['ranktable', 'frobnicate'])).stderr).toMatch(
      /unknown subcommand "frobnicate"; expected generate, merge, validate or show/,
    );
    const flag = await npurun(['ranktable', 'generate', '--device', '0-7']);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toMatch(/Unknown option '--device'/);
    const missing = await npurun(['ranktable', 'validate', join(work, 'nope.json')]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/nope\.json: \(file\): cannot read the rank table: no such file or directory$/m);
    expect((await npurun(['ranktable', 'merge', 'one.json'])).stderr).toMatch(
      /expected at least two rank-table files, got 1/,
    );
  });
});

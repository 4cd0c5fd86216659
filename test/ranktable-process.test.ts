import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));
const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'npurun-rt-cli-'));
const npurun = (args: string[], env: Record<string, string> = {}) => execa('node', [BIN, ...args], { reject: false, cwd: work, env: { NO_COLOR: '1', ...env } });

describe('npurun ranktable as a process', () => {
  it('generate --simulate 8 --server-ip writes the hccl_tools file, which validate accepts', async () => {
    const r = await npurun(['ranktable', 'generate', '--simulate', '8', '--server-ip', '10.155.111.140', '--out', work]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(join(work, 'hccl_8p_01234567_10.155.111.140.json'));
    const v = await npurun(['ranktable', 'validate', r.stdout.trim()]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout).toMatch(/valid rank table, 1 server, 8 ranks/);
  });

  it('generate --devices "[4,8)" names the file by the devices; "[3,6)" is refused like hccl_tools does', async () => {
    const ok = await npurun(['ranktable', 'generate', '--simulate', '8', '--server-ip', '10.0.0.1', '--devices', '[4,8)', '--out', join(work, 'four.json')]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const table = JSON.parse(readFileSync(join(work, 'four.json'), 'utf8')) as { server_list: { device: { device_id: string; rank_id: string }[] }[] };
    expect(table.server_list[0]!.device.map((d) => `${d.device_id}:${d.rank_id}`)).toEqual(['4:0', '5:1', '6:2', '7:3']);
    const bad = await npurun(['ranktable', 'generate', '--simulate', '8', '--server-ip', '10.0.0.1', '--devices', '[3,6)']);
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
    const r = await npurun(['ranktable', 'generate', '--devices', '[0,4)', '--server-ip', '10.155.111.140', '--out', join(work, 'real') + '/'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(r.stdout.trim(), 'utf8')).toBe(readFileSync(`${FIX}hccl_4p_0123_10.155.111.140.json`, 'utf8'));
    // The same stand-ins through `devices`: the Warning device and the held one are named; exit 1.
    const d = await npurun(['devices'], env);
    expect(d.exitCode).toBe(1);
    expect(d.stdout).toMatch(/problem: device 3 health is Warning/);
    expect(d.stdout).toMatch(/problem: device 5 is held by pid 271828 \(python3\)/);
    // A device asked for that is held refuses to go into a table.
    const held = await npurun(['ranktable', 'generate', '--devices', '[4,8)', '--server-ip', '10.155.111.140'], env);
    expect(held.exitCode, held.stderr).toBe(0); // hccl_tools does not look at holders: neither does generate
  });

  it('devices on a machine without npu-smi says where it looked, exit 3', async () => {
    const r = await npurun(['devices'], { PATH: '/usr/bin:/bin' });
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toMatch(/no npu-smi found \(looked on PATH and in \/usr\/local\/Ascend\/driver\/tools/);
  });

  it('merge of the two 8p fixtures equals merge_hccl.py output, with string ranks', async () => {
    const out = join(work, 'merged.json');
    const r = await npurun(['ranktable', 'merge', `${FIX}hccl_8p_01234567_10.155.111.140.json`, `${FIX}hccl_8p_01234567_10.155.111.141.json`, '--out', out]);
    expect(r.exitCode, r.stderr).toBe(0);
    const expected = JSON.parse(readFileSync(`${FIX}hccl_2s_16p.merge_hccl.json`, 'utf8')) as { server_list: { device: { rank_id: unknown }[] }[] };
    for (const s of expected.server_list) for (const d of s.device) d.rank_id = String(d.rank_id);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(expected);
    const show = await npurun(['ranktable', 'show', out]);
    expect(show.stdout).toMatch(/10\.155\.111\.141\s+7\s+192\.168\.103\.110\s+15/);
    expect(show.stdout).toMatch(/2 servers, 16 ranks/);
  });

  const good = () => JSON.parse(readFileSync(`${FIX}hccl_8p_01234567_10.155.111.140.json`, 'utf8')) as { [k: string]: unknown; server_list: { [k: string]: unknown; device: Record<string, unknown>[] }[] };
  const malformed: [string, () => string, RegExp][] = [
    ['bad JSON', () => '{\n  "version": "1.0",\n  "server_count": "1",,\n}', /not valid JSON at line 3, column \d+/],
    ['not an object', () => '[1, 2]', /\(top level\): expected a JSON object, got an? (array|list)/],
    ['wrong type', () => { const t = good(); t.server_list[0]!.device[0]!.device_ip = 7; return JSON.stringify(t); }, /server_list\[0\]\.device\[0\]\.device_ip: expected string, got number 7/],
    ['duplicate ranks', () => { const t = good(); t.server_list[0]!.device[1]!.rank_id = '0'; return JSON.stringify(t); }, /server_list\[0\]\.device\[1\]\.rank_id: rank 0 repeated/],
    ['gap in ranks', () => { const t = good(); t.server_list[0]!.device[7]!.rank_id = '9'; return JSON.stringify(t); }, /rank ids must be 0\.\.7 without gaps; missing 7/],
    ['bad IP', () => { const t = good(); t.server_list[0]!.device[4]!.device_ip = '192.168.1'; return JSON.stringify(t); }, /device\[4\]\.device_ip: expected an IPv4 address, got "192\.168\.1"/],
    ['device count 3', () => { const t = good(); t.server_list[0]!.device = t.server_list[0]!.device.slice(0, 3); return JSON.stringify(t); }, /server_list\[0\]\.device: 3 devices on one server/],
    ['crossing groups', () => { const t = good(); t.server_list[0]!.device = t.server_list[0]!.device.slice(2, 6).map((d, i) => ({ ...d, rank_id: String(i) })); return JSON.stringify(t); }, /cross the 910 device groups 0-3 and 4-7/],
    ['unknown version', () => JSON.stringify({ ...good(), version: '1.2' }), /version: version "1\.2" .*not supported yet/],
    ['missing status', () => { const t = good(); delete t.status; return JSON.stringify(t); }, /status: missing \(required\)/],
    ['server_count mismatch', () => JSON.stringify({ ...good(), server_count: '2' }), /server_count: says 2 but server_list has 1 server/],
    ['duplicate device ip', () => { const t = good(); t.server_list[0]!.device[1]!.device_ip = t.server_list[0]!.device[0]!.device_ip; return JSON.stringify(t); }, /device\[1\]\.device_ip: 192\.168\.100\.101 is also server_list\[0\]\.device\[0\]\.device_ip/],
    ['status not completed', () => JSON.stringify({ ...good(), status: 'initializing' }), /status: expected "completed", got string "initializing"/],
  ];
  it.each(malformed)('validate refuses %s: exit 2, message on stderr with the JSON path', async (name, text, message) => {
    const file = join(work, `${name.replace(/\W+/g, '-')}.json`);
    writeFileSync(file, text());
    const r = await npurun(['ranktable', 'validate', file]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.startsWith(`${file}: `)).toBe(true);
  });

  it('usage errors: unknown subcommand, unknown flag, missing file all exit 2', async () => {
    expect((await npurun(['ranktable', 'frobnicate'])).stderr).toMatch(/unknown subcommand "frobnicate"; expected generate, merge, validate or show/);
    const flag = await npurun(['ranktable', 'generate', '--device', '0-7']);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toMatch(/Unknown option '--device'/);
    const missing = await npurun(['ranktable', 'validate', join(work, 'nope.json')]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/nope\.json: \(file\): cannot read: ENOENT/);
    expect((await npurun(['ranktable', 'merge', 'one.json'])).stderr).toMatch(/expected at least two rank-table files, got 1/);
  });
});

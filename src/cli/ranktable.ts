import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseDeviceList } from '../devices/device-list.js';
import { isIPv4 } from '../devices/npu-smi.js';
import { localShellRunner, probeHost } from '../devices/probe.js';
import { simulatedHostFacts } from '../devices/simulate.js';
import type { HostFacts } from '../devices/types.js';
import { inputError, NpurunError } from '../errors.js';
import { loadInventory } from '../inventory/inventory.js';
import { sshJumpResolver } from '../launch/jump.js';
import { preflight } from '../launch/preflight.js';
import { generateRankTable, mergeRankTables, rankTableFileName, serializeRankTable } from '../ranktable/generate.js';
import type { RankTable, RankTableServerInput } from '../ranktable/types.js';
import { groupingProblem, validateRankTableFile, type Problem } from '../ranktable/validate.js';
import { boolFlag, numberFlag, parseCommandArgs, stringFlag, type ParsedArgs } from './args.js';
import { sshConfigText } from './launch.js';
import { execa } from 'execa';

const HELP = `Usage: npurun ranktable generate [--devices "[0,8)"|0-7|0,1,2,3] [--server-ip IP] [--visible-devices LIST]
                                  [--hosts FILE] [--simulate N] [--out PATH]
       npurun ranktable merge A.json B.json ... [--out FILE]
       npurun ranktable validate FILE [--hosts FILE] [--json]
       npurun ranktable show FILE [--json]

generate  the HCCL rank table of this server (as hccl_tools.py writes it: hccl_<n>p_<ids>_<ip>.json),
          or with --hosts one merged table of every server, ranks numbered server by server.
          --devices uses hccl_tools' logical ids ("[0,4)", "[4,8)", "[0,8)"; also 0-3 or 0,1,2,3);
          --visible-devices maps logical to physical ids inside containers (default 0,1,...,7);
          --server-ip overrides host-IP detection (npurun uses the address of the default route,
          not the hostname lookup of hccl_tools, which often gives 127.0.x.x).
          --out: a directory gets the hccl_tools file name; a file path is used as is (default rank-tables/).
merge     merge_hccl.py: servers in argument order, ranks renumbered (ids kept as strings).
validate  schema and semantic checks; every problem with its JSON path. With --hosts, also each
          server's devices and device IPs against the live hosts. Exit 2 when invalid.
show      server, device, device ip and rank as a table.`;

const OPTIONS = {
  devices: { type: 'string' },
  'server-ip': { type: 'string' },
  'visible-devices': { type: 'string' },
  hosts: { type: 'string' },
  'ssh-config': { type: 'string' },
  simulate: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The address of the interface holding the default route (no packet is sent), else the first non-loopback IPv4. */
export async function detectHostIp(facts: HostFacts): Promise<string> {
  const r = await execa('ip', ['-o', '-4', 'route', 'show', 'default'], { reject: false });
  const dev = /\bdev\s+(\S+)/.exec(r.stdout ?? '')?.[1];
  const viaRoute = facts.interfaces.find((i) => i.name === dev)?.addresses[0];
  if (viaRoute) return viaRoute;
  const other = facts.interfaces.flatMap((i) => i.addresses).find((a) => !a.startsWith('127.'));
  if (other) return other;
  throw new NpurunError('input', 'cannot detect this server\'s IP (no default route, no non-loopback address); give --server-ip');
}

function writeTable(table: RankTable, out: string | undefined, logicalName?: string): string {
  const name = logicalName ?? rankTableFileName(table);
  const target = resolve(out ?? 'rank-tables');
  const isDir = out === undefined || out.endsWith('/') || (existsSync(target) && statSync(target).isDirectory());
  const file = isDir ? join(target, name) : target;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, serializeRankTable(table));
  return file;
}

function serverFromFacts(serverId: string, facts: HostFacts, logical: number[] | undefined, visible: number[] | undefined, where: string): RankTableServerInput {
  const physical = (logical ?? facts.devices.map((d) => d.deviceId)).map((l) => {
    if (!visible) return l;
    const p = visible[l];
    if (p === undefined) throw inputError('--devices', `logical device ${l} is beyond --visible-devices (${visible.length} visible)`);
    return p;
  });
  const devices = physical.map((id) => {
    const d = facts.devices.find((x) => x.deviceId === id);
    if (!d) throw new NpurunError('unreachable', `${where}: device ${id} not found (npu-smi lists ${facts.devices.map((x) => x.deviceId).join(', ') || 'none'})`);
    if (!d.deviceIp) throw new NpurunError('unreachable', `${where}: device ${id} has no device IP (no address_${id} in /etc/hccn.conf, hccn_tool gave none)`);
    return { deviceId: id, deviceIp: d.deviceIp };
  });
  return { serverId, devices };
}

async function generate(args: ParsedArgs): Promise<number> {
  const devicesFlag = stringFlag(args, 'devices');
  const logical = devicesFlag !== undefined ? parseDeviceList(devicesFlag, '--devices') : undefined;
  if (logical) {
    const bad = groupingProblem(logical);
    if (bad) throw inputError('--devices', bad);
  }
  const visibleFlag = stringFlag(args, 'visible-devices');
  const visible = visibleFlag !== undefined ? visibleFlag.split(',').map((v) => {
    if (!/^\s*\d+\s*$/.test(v)) throw inputError('--visible-devices', `"${visibleFlag}" is not a comma-separated list of device ids`);
    return Number(v);
  }) : undefined;
  const serverIp = stringFlag(args, 'server-ip');
  if (serverIp !== undefined && !isIPv4(serverIp)) throw inputError('--server-ip', `"${serverIp}" is not an IPv4 address`);
  const hostsFile = stringFlag(args, 'hosts');
  let table: RankTable;
  let logicalName: string | undefined;
  if (hostsFile) {
    if (serverIp) throw inputError('--server-ip', 'not with --hosts: each server_id is that host\'s address in the inventory');
    const configText = sshConfigText(stringFlag(args, 'ssh-config'));
    const hosts = loadInventory(resolve(hostsFile), configText !== undefined ? { sshConfigText: configText } : {});
    for (const h of hosts) if (!isIPv4(h.address)) throw inputError(hostsFile, `host ${h.name}: address "${h.address}" is not an IPv4 address; server_id must be the server's IP`);
    const { transports, facts } = await preflight(hosts, { progress: 'none', ssh: { resolveJump: sshJumpResolver(configText) } });
    await Promise.all([...transports.values()].map((t) => t.close()));
    table = generateRankTable(hosts.map((h) => serverFromFacts(h.address, facts[h.name] as HostFacts, logical, visible, h.name)));
  } else {
    const simulate = numberFlag(args, 'simulate', 1, 16);
    const facts = simulate !== undefined ? simulatedHostFacts(simulate) : await probeHost(localShellRunner);
    if (facts.devices.length === 0) throw new NpurunError('unreachable', `no NPUs on this host: ${facts.problems.join('; ')}`);
    const id = serverIp ?? (await detectHostIp(facts));
    table = generateRankTable([serverFromFacts(id, facts, logical, visible, 'this host')]);
    // hccl_tools names the file by the logical ids of --device_num.
    if (logical) logicalName = `hccl_${logical.length}p_${logical.join('')}_${id}.json`;
  }
  const file = writeTable(table, stringFlag(args, 'out'), logicalName);
  process.stdout.write(`${file}\n`);
  return 0;
}

function readTable(file: string): { table: RankTable; warnings: Problem[] } {
  const r = validateRankTableFile(file);
  if (!r.table) throw new NpurunError('input', `${file}: invalid rank table`, { details: r.problems.map((p) => `${p.path}: ${p.message}`) });
  return { table: r.table, warnings: r.warnings };
}

function printWarnings(file: string, warnings: Problem[]): void {
  for (const w of warnings) process.stderr.write(`${file}: warning: ${w.path}: ${w.message}\n`);
}

export function renderRankTable(table: RankTable): string {
  const rows = [['server', 'device', 'device ip', 'rank']];
  for (const s of table.server_list) for (const d of s.device) rows.push([s.server_id, d.device_id, d.device_ip, d.rank_id]);
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const ranks = rows.length - 1;
  return [...rows.map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()), `${table.server_list.length} server${table.server_list.length === 1 ? '' : 's'}, ${ranks} rank${ranks === 1 ? '' : 's'}`].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs('ranktable', argv, OPTIONS);
  const [sub, ...files] = args.positionals;
  if (boolFlag(args, 'help') || sub === undefined) {
    process.stdout.write(HELP + '\n');
    return sub === undefined && !boolFlag(args, 'help') ? 2 : 0;
  }
  switch (sub) {
    case 'generate':
      if (files.length > 0) throw inputError('npurun ranktable generate', `unexpected argument "${files[0]}"`);
      return generate(args);
    case 'merge': {
      if (files.length < 2) throw inputError('npurun ranktable merge', `expected at least two rank-table files, got ${files.length}`);
      const tables = files.map((f) => {
        const { table, warnings } = readTable(f);
        printWarnings(f, warnings);
        return table;
      });
      const merged = mergeRankTables(tables);
      const problems = validateMerged(merged);
      if (problems.length > 0) throw new NpurunError('input', 'the merged rank table would be invalid', { details: problems });
      process.stdout.write(`${writeTable(merged, stringFlag(args, 'out'))}\n`);
      return 0;
    }
    case 'validate':
    case 'show': {
      if (files.length !== 1) throw inputError(`npurun ranktable ${sub}`, `expected one rank-table file, got ${files.length}`);
      const file = files[0] as string;
      const r = validateRankTableFile(file);
      printWarnings(file, r.warnings);
      if (!r.table) {
        if (boolFlag(args, 'json')) process.stdout.write(JSON.stringify({ file, valid: false, problems: r.problems, warnings: r.warnings }, null, 2) + '\n');
        for (const p of r.problems) process.stderr.write(`${file}: ${p.path}: ${p.message}\n`);
        return 2;
      }
      const ranks = r.table.server_list.reduce((n, s) => n + s.device.length, 0);
      if (sub === 'validate' && stringFlag(args, 'hosts')) {
        const live = await crossCheckHosts(r.table, stringFlag(args, 'hosts') as string, stringFlag(args, 'ssh-config'));
        for (const p of live) process.stderr.write(`${file}: ${p.path}: ${p.message}\n`);
        if (live.length > 0) return 2;
      }
      if (boolFlag(args, 'json')) {
        process.stdout.write(JSON.stringify(sub === 'show' ? r.table : { file, valid: true, servers: r.table.server_list.length, ranks, warnings: r.warnings }, null, 2) + '\n');
      } else if (sub === 'validate') {
        process.stdout.write(`${file}: valid rank table, ${r.table.server_list.length} server${r.table.server_list.length === 1 ? '' : 's'}, ${ranks} rank${ranks === 1 ? '' : 's'}\n`);
      } else process.stdout.write(renderRankTable(r.table) + '\n');
      return 0;
    }
    default:
      throw inputError('npurun ranktable', `unknown subcommand "${sub}"; expected generate, merge, validate or show`);
  }
}

/** Each server of the table against the live host with that address: its devices and their NIC addresses. */
async function crossCheckHosts(table: RankTable, hostsFile: string, sshConfigFlag: string | undefined): Promise<Problem[]> {
  const configText = sshConfigText(sshConfigFlag);
  const hosts = loadInventory(resolve(hostsFile), configText !== undefined ? { sshConfigText: configText } : {});
  const { transports, facts } = await preflight(hosts, { progress: 'none', ssh: { resolveJump: sshJumpResolver(configText) } });
  await Promise.all([...transports.values()].map((t) => t.close()));
  const problems: Problem[] = [];
  table.server_list.forEach((s, si) => {
    const host = hosts.find((h) => h.address === s.server_id);
    if (!host) {
      problems.push({ path: `server_list[${si}].server_id`, message: `${s.server_id} is none of the hosts in ${hostsFile}` });
      return;
    }
    const f = facts[host.name] as HostFacts;
    s.device.forEach((d, di) => {
      const dev = f.devices.find((x) => String(x.deviceId) === d.device_id);
      if (!dev) problems.push({ path: `server_list[${si}].device[${di}].device_id`, message: `host ${host.name} has no device ${d.device_id} (npu-smi lists ${f.devices.map((x) => x.deviceId).join(', ') || 'none'})` });
      else if (dev.deviceIp !== d.device_ip) problems.push({ path: `server_list[${si}].device[${di}].device_ip`, message: `${d.device_ip}, but host ${host.name} reports ${dev.deviceIp ?? 'no address'} for device ${d.device_id}` });
    });
  });
  return problems;
}

function validateMerged(table: RankTable): string[] {
  const ips = new Map<string, string>();
  const out: string[] = [];
  for (const s of table.server_list) {
    for (const d of s.device) {
      const prev = ips.get(d.device_ip);
      if (prev) out.push(`device ip ${d.device_ip} of ${s.server_id} device ${d.device_id} is also ${prev}`);
      ips.set(d.device_ip, `${s.server_id} device ${d.device_id}`);
    }
  }
  const counts = new Set(table.server_list.map((s) => s.device.length));
  if (counts.size > 1) out.push(`servers have different device counts (${table.server_list.map((s) => s.device.length).join(', ')})`);
  return out;
}


import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseDeviceList } from '../devices/device-list.js';
import { isIPv4, parseHccnConf } from '../devices/npu-smi.js';
import type { HostFacts } from '../devices/types.js';
import { inputError, NpurunError } from '../errors.js';
import type { HostSpec } from '../plan/types.js';
import { generateRankTable, mergeRankTables, rankTableFileName, serializeRankTable } from '../ranktable/generate.js';
import type { SuperPodRankTable } from '../ranktable/super-pod.js';
import type { RankTable, RankTableServerInput } from '../ranktable/types.js';
import { groupingProblem, serverKindOf, validateRankTable, validateRankTableFile, type Problem } from '../ranktable/validate.js';
import { boolFlag, numberFlag, parseCommandArgs, stringFlag, type ParsedArgs } from './args.js';

/**
 * Probing and SSH (execa, ssh2, listr2, the launcher) load only when a subcommand reaches hosts:
 * validate, show and merge then start in half the time.
 */
async function hostAccess() {
  const [probe, simulate, hostIp, inventory, preflight, jump, launchCli] = await Promise.all([
    import('../devices/probe.js'),
    import('../devices/simulate.js'),
    import('../devices/host-ip.js'),
    import('../inventory/inventory.js'),
    import('../launch/preflight.js'),
    import('../launch/jump.js'),
    import('./launch.js'),
  ]);
  return { ...probe, ...simulate, ...hostIp, ...inventory, ...preflight, ...jump, sshConfigText: launchCli.sshConfigText };
}

/** Every host of an inventory, probed over SSH (or locally): its facts by host name. `check` runs before any connection. */
async function probeInventory(hostsFile: string, sshConfigFlag: string | undefined, check: (hosts: HostSpec[]) => void = () => {}) {
  const { sshConfigText, loadInventory, preflight, sshJumpResolver } = await hostAccess();
  const configText = sshConfigText(sshConfigFlag);
  const hosts = loadInventory(resolve(hostsFile), configText !== undefined ? { sshConfigText: configText } : {});
  check(hosts);
  const { transports, facts } = await preflight(hosts, { progress: 'none', ssh: { resolveJump: sshJumpResolver(configText) } });
  await Promise.all([...transports.values()].map((t) => t.close()));
  return { hosts, facts };
}

const HELP: Record<string, string> = {
  generate: `Usage: npurun ranktable generate [--devices "[0,8)"|0-7|0,1,2,3] [--server-ip IP] [--visible-devices LIST]
                                  [--device-ip-file FILE] [--hosts FILE] [--simulate N] [--out PATH]

The HCCL rank table of this server, as hccl_tools.py writes it (hccl_<n>p_<ids>_<ip>.json, byte for
byte), or with --hosts one table of every server, ranks numbered server by server.
  --devices          hccl_tools' logical ids: "[0,4)", "[4,8)", "[0,8)"; also 0-3 or 0,1,2,3.
                     Default: every device found (or every --visible-devices entry). On 910 servers
                     1, 2 or 4 devices inside 0-3 or 4-7, or all 8; other groupings are refused.
  --visible-devices  logical -> physical ids inside containers, as hccl_tools: "4,5,6,7" makes
                     logical 0 physical device 4 (default: logical = physical).
  --server-ip        the server_id; default: the address of this host's default route (not the
                     hostname lookup of hccl_tools, which often gives 127.0.x.x).
  --device-ip-file   take device addresses from this hccn.conf-style file (address_N=IP) instead
                     of /etc/hccn.conf or hccn_tool.
  --simulate N       N simulated devices (addresses as on Atlas 800 servers) instead of probing.
  --out              a directory (existing, or ending in /) gets the hccl_tools file name; any
                     other path is the file itself. Default: rank-tables/ in the current directory.
Prints the written path. Devices that are unhealthy or held by a process are written with a warning.`,
  merge: `Usage: npurun ranktable merge A.json B.json ... [--out FILE]

merge_hccl.py: servers in argument order, ranks renumbered 0..N-1 server by server; rank ids stay
strings (merge_hccl.py writes numbers). Default output: rank-tables/hccl_<S>s_<N>p.json.`,
  validate: `Usage: npurun ranktable validate FILE [--hosts FILE] [--json]

Schema and semantic checks of a version 1.0 table (also pre-1.0 group_list files) or a version 1.2
(Atlas A3 SuperPoD) table. Prints "FILE: valid rank table, S servers, N ranks", or every problem as
"FILE: <json path>: <what was expected>" on stderr and exits 2. With --hosts, also each server's
devices and device IPs against the live hosts.`,
  show: `Usage: npurun ranktable show FILE [--json]

Server, device, device ip and rank of every entry, as a table (--json: the table, rank ids as strings).`,
};

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const USAGE = `Usage: npurun ranktable generate|merge|validate|show ... [--help]

generate  the rank table of this server (or of every --hosts server), as hccl_tools.py writes it
merge     several tables into one, as merge_hccl.py (ranks renumbered server by server)
validate  schema and semantic checks, every problem with its JSON path; exit 2 when invalid
show      server, device, device ip and rank as a table

Run \`npurun ranktable <subcommand> --help\` for its options.`;

/** Flags each subcommand takes (an unknown one is a usage error, exit 2). */
const FLAGS: Record<string, string[]> = {
  generate: ['devices', 'server-ip', 'visible-devices', 'device-ip-file', 'hosts', 'ssh-config', 'simulate', 'out'],
  merge: ['out'],
  validate: ['hosts', 'ssh-config', 'json'],
  show: ['json'],
};

const OPTIONS = {
  devices: { type: 'string' },
  'server-ip': { type: 'string' },
  'visible-devices': { type: 'string' },
  'device-ip-file': { type: 'string' },
  hosts: { type: 'string' },
  'ssh-config': { type: 'string' },
  simulate: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function writeTable(table: RankTable, out: string | undefined, logicalName?: string): string {
  const name = logicalName ?? rankTableFileName(table);
  const target = resolve(out ?? 'rank-tables');
  const isDir = out === undefined || out.endsWith('/') || (existsSync(target) && statSync(target).isDirectory());
  const file = isDir ? join(target, name) : target;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, serializeRankTable(table));
  return file;
}

/** hccl_tools' --visible_devices: physical ids by position, position = logical id. */
function parseVisible(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const ids = text.split(',').map((v) => {
    if (!/^\s*\d+\s*$/.test(v) || Number(v) > 15) throw inputError('--visible-devices', `"${text}" is not a comma-separated list of device ids 0-15`);
    return Number(v);
  });
  if (new Set(ids).size !== ids.length) throw inputError('--visible-devices', `"${text}" lists a device twice`);
  return ids;
}

interface Selection {
  /** hccl_tools' logical ids (what --devices names, and what the file name carries). */
  logical: number[];
  physical: number[];
}

/** Logical ids (default: every visible or detected device) mapped to physical ids; refuses groupings HCCL refuses. */
function selectDevices(facts: HostFacts, logicalFlag: number[] | undefined, visible: number[] | undefined): Selection {
  const logical = logicalFlag ?? (visible ? visible.map((_, i) => i) : facts.devices.map((d) => d.deviceId));
  const physical = logical.map((l) => {
    if (!visible) return l;
    const p = visible[l];
    if (p === undefined) throw inputError('--devices', `logical device ${l} is beyond --visible-devices (${visible.length} visible: logical ids 0-${visible.length - 1})`);
    return p;
  });
  const bad = groupingProblem([...physical].sort((a, b) => a - b), serverKindOf(facts.devices));
  if (bad) throw inputError(visible ? '--visible-devices' : '--devices', visible ? `${bad} (physical ids ${physical.join(',')})` : bad);
  return { logical, physical };
}

/** --device-ip-file: an hccn.conf-style file is the only source of device addresses. */
function withDeviceIpFile(facts: HostFacts, file: string): HostFacts {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw inputError(file, `cannot read the --device-ip-file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const conf = parseHccnConf(text);
  return {
    ...facts,
    devices: facts.devices.map((d) => {
      const { deviceIp: _ip, ipSource: _source, ...rest } = d;
      const address = conf.get(d.deviceId)?.address;
      if (address !== undefined && !isIPv4(address)) throw inputError(file, `address_${d.deviceId}: expected an IPv4 address, got "${address}"`);
      return address ? { ...rest, deviceIp: address, ipSource: 'given' as const } : rest;
    }),
  };
}

function serverFromFacts(
  serverId: string,
  facts: HostFacts,
  physical: number[],
  where: string,
  ipSource: string,
  deviceUsable: (d: HostFacts['devices'][number], needIp: boolean) => string | undefined,
): RankTableServerInput {
  const devices = physical.map((id) => {
    const d = facts.devices.find((x) => x.deviceId === id);
    if (!d) throw inputError('--devices', `${where}: device ${id} not found (npu-smi lists ${facts.devices.map((x) => x.deviceId).join(', ') || 'none'})`);
    if (!d.deviceIp) throw new NpurunError('unreachable', `${where}: device ${id} has no device IP (no address_${id} in ${ipSource})`, { hint: 'give the addresses with --device-ip-file FILE (address_N=IP lines)' });
    const unusable = deviceUsable(d, false);
    if (unusable) process.stderr.write(`npurun: warning: ${where}: device ${id} ${unusable}; written into the rank table anyway (as hccl_tools does)\n`);
    return { deviceId: id, deviceIp: d.deviceIp };
  });
  return { serverId, devices };
}

async function generate(args: ParsedArgs): Promise<number> {
  const devicesFlag = stringFlag(args, 'devices');
  const logicalFlag = devicesFlag !== undefined ? parseDeviceList(devicesFlag, '--devices') : undefined;
  const visible = parseVisible(stringFlag(args, 'visible-devices'));
  const serverIp = stringFlag(args, 'server-ip');
  if (serverIp !== undefined && !isIPv4(serverIp)) throw inputError('--server-ip', `"${serverIp}" is not an IPv4 address`);
  const ipFile = stringFlag(args, 'device-ip-file');
  const ipSource = ipFile ?? '/etc/hccn.conf, and hccn_tool gave none';
  const hostsFile = stringFlag(args, 'hosts');
  const { deviceUsable, simulatedHostFacts, probeHost, localShellRunner, detectHostIp } = await hostAccess();
  let table: RankTable;
  let name: string | undefined;
  if (hostsFile) {
    if (serverIp) throw inputError('--server-ip', 'not with --hosts: each server_id is that host\'s address in the inventory');
    if (ipFile) throw inputError('--device-ip-file', 'not with --hosts: each host\'s addresses come from its own /etc/hccn.conf or hccn_tool');
    const { hosts, facts } = await probeInventory(hostsFile, stringFlag(args, 'ssh-config'), (hosts) => {
      for (const h of hosts) if (!isIPv4(h.address)) throw inputError(hostsFile, `host ${h.name}: address "${h.address}" is not an IPv4 address; server_id must be the server's IP`);
    });
    table = generateRankTable(
      hosts.map((h) => {
        const f = facts[h.name] as HostFacts;
        return serverFromFacts(h.address, f, selectDevices(f, logicalFlag, visible).physical, `host ${h.name}`, ipSource, deviceUsable);
      }),
    );
  } else {
    const simulate = numberFlag(args, 'simulate', 1, 16);
    const probed = simulate !== undefined ? simulatedHostFacts(simulate) : await probeHost(localShellRunner);
    if (probed.devices.length === 0) throw new NpurunError('unreachable', `no NPUs on this host: ${probed.problems.join('; ') || 'npu-smi listed none'}`);
    const facts = ipFile ? withDeviceIpFile(probed, ipFile) : probed;
    const { logical, physical } = selectDevices(facts, logicalFlag, visible);
    const id = serverIp ?? (await detectHostIp(facts));
    table = generateRankTable([serverFromFacts(id, facts, physical, 'this host', ipSource, deviceUsable)]);
    // hccl_tools names the file by the logical ids of --device_num, whatever --visible_devices maps them to.
    name = `hccl_${logical.length}p_${logical.join('')}_${id}.json`;
  }
  const file = writeTable(table, stringFlag(args, 'out'), name);
  process.stdout.write(`${file}\n`);
  return 0;
}

function readTable(file: string): { table: RankTable; warnings: Problem[] } {
  const r = validateRankTableFile(file);
  if (r.superPod) throw inputError(file, 'a version 1.2 (Atlas A3 SuperPoD) rank table; merge works on version 1.0 tables');
  if (!r.table) throw new NpurunError('input', `${file}: invalid rank table`, { details: r.problems.map((p) => `${file}: ${p.path}: ${p.message}`) });
  return { table: r.table, warnings: r.warnings };
}

function printWarnings(file: string, warnings: Problem[]): void {
  for (const w of warnings) process.stderr.write(`${file}: warning: ${w.path}: ${w.message}\n`);
}

/** One line per rank: server, device, device ip, rank (and super device, SuperPoD for version 1.2). */
export function renderRankTable(table: RankTable | SuperPodRankTable): string {
  const pods = new Map<string, string>();
  if (table.version === '1.2') for (const p of table.super_pod_list ?? []) for (const s of p.server_list) pods.set(s.server_id, p.super_pod_id);
  const superPod = table.version === '1.2';
  const rows = [['server', 'device', 'device ip', 'rank', ...(superPod ? ['super device', 'super pod'] : [])]];
  for (const s of table.server_list) {
    for (const d of s.device) {
      const extra = superPod ? [('super_device_id' in d && d.super_device_id) || '-', pods.get(s.server_id) ?? '-'] : [];
      rows.push([s.server_id, d.device_id, d.device_ip ?? '-', String(d.rank_id), ...extra]);
    }
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const ranks = rows.length - 1;
  const summary = `${plural(table.server_list.length, 'server')}, ${plural(ranks, 'rank')}${superPod ? ` (version 1.2, ${pods.size ? plural(new Set(pods.values()).size, 'SuperPoD') : 'no super_pod_list'})` : ''}`;
  return [...rows.map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()), summary].join('\n');
}

async function validateOrShow(sub: 'validate' | 'show', files: string[], args: ParsedArgs): Promise<number> {
  if (files.length !== 1) throw inputError(`npurun ranktable ${sub}`, `expected one rank-table file, got ${files.length}`);
  const file = files[0] as string;
  const json = boolFlag(args, 'json');
  const r = validateRankTableFile(file);
  printWarnings(file, r.warnings);
  const valid = r.table ?? r.superPod;
  if (!valid) {
    if (json) process.stdout.write(JSON.stringify({ file, valid: false, problems: r.problems, warnings: r.warnings }, null, 2) + '\n');
    for (const p of r.problems) process.stderr.write(`${file}: ${p.path}: ${p.message}\n`);
    return 2;
  }
  const ranks = valid.server_list.reduce((n, s) => n + s.device.length, 0);
  const hostsFile = stringFlag(args, 'hosts');
  if (hostsFile) {
    if (!r.table) throw inputError('--hosts', 'live cross-checks work on version 1.0 tables, whose server_id is the host\'s IP');
    const live = await crossCheckHosts(r.table, hostsFile, stringFlag(args, 'ssh-config'));
    for (const p of live) process.stderr.write(`${file}: ${p.path}: ${p.message}\n`);
    if (live.length > 0) return 2;
  }
  const servers = valid.server_list.length;
  if (json) {
    process.stdout.write(JSON.stringify(sub === 'show' ? valid : { file, valid: true, version: valid.version, servers, ranks, warnings: r.warnings }, null, 2) + '\n');
  } else if (sub === 'validate') {
    const version = r.superPod ? ' (version 1.2, Atlas A3 SuperPoD)' : '';
    process.stdout.write(`${file}: valid rank table${version}, ${servers} server${servers === 1 ? '' : 's'}, ${ranks} rank${ranks === 1 ? '' : 's'}\n`);
  } else process.stdout.write(renderRankTable(valid) + '\n');
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs('ranktable', argv, OPTIONS);
  const [sub, ...files] = args.positionals;
  const help = boolFlag(args, 'help');
  if (sub === undefined) {
    (help ? process.stdout : process.stderr).write(USAGE + '\n');
    return help ? 0 : 2;
  }
  const allowed = FLAGS[sub];
  if (!allowed) throw inputError('npurun ranktable', `unknown subcommand "${sub}"; expected generate, merge, validate or show`);
  if (help) {
    process.stdout.write(`${HELP[sub]}\n`);
    return 0;
  }
  const stray = Object.keys(args.values).find((k) => args.values[k] !== undefined && !allowed.includes(k));
  if (stray) throw inputError(`npurun ranktable ${sub}`, `--${stray} is not an option of ${sub}; see \`npurun ranktable ${sub} --help\``);
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
      // Servers that clash (same host twice, same device IPs, different device counts) show up only once merged.
      const problems = validateRankTable(merged).problems.map((p) => `merged ${p.path}: ${p.message}`);
      if (problems.length > 0) throw new NpurunError('input', 'the merged rank table would be invalid', { details: problems });
      process.stdout.write(`${writeTable(merged, stringFlag(args, 'out'))}\n`);
      return 0;
    }
    default:
      return validateOrShow(sub as 'validate' | 'show', files, args);
  }
}

/** Each server of the table against the live host with that address: its devices and their NIC addresses. */
async function crossCheckHosts(table: RankTable, hostsFile: string, sshConfigFlag: string | undefined): Promise<Problem[]> {
  const { hosts, facts } = await probeInventory(hostsFile, sshConfigFlag);
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



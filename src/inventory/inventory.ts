import { isIP } from 'node:net';
import { homedir, hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDeviceList } from '../devices/device-list.js';
import { isIPv4 } from '../devices/npu-smi.js';
import { inputError, NpurunError } from '../errors.js';
import type { HostSpec } from '../inventory/types.js';
import { loadYamlFile, parseYamlText, readInputText, YAML_MAX_BYTES } from '../schema.js';
import { ownParserSource, type SshSettingsSource } from './openssh-config.js';
import type { ResolvedSsh } from './ssh-config.js';

/** Per-host settings of a YAML hosts file (schemas/hosts.schema.json, the single source of the format). */
interface HostSettings {
  user?: string;
  port?: number;
  identity_file?: string;
  known_hosts?: string;
  strict_host_key_checking?: 'yes' | 'accept-new' | 'no';
  proxy_jump?: string;
  devices?: string | number[];
}

interface HostEntry extends HostSettings {
  address: string;
  name?: string;
  slots?: number;
}

interface HostsFile {
  defaults?: HostSettings;
  hosts: HostEntry[];
  spares?: HostEntry[];
}

/** A hosts file read: the job's hosts in rank order, and the spares that may stand in for a lost one. */
export interface Inventory {
  hosts: HostSpec[];
  spares: HostSpec[];
}

export interface InventoryOptions {
  /** Where remote hosts' SSH settings come from (`ssh -G`); else npurun's parser of `sshConfigText`. */
  settings?: SshSettingsSource;
  /** Text of ~/.ssh/config (or --ssh-config); undefined = none. Read only without `settings`. */
  sshConfigText?: string;
  home?: string;
  /** Told what was read but not honoured (ssh_config Match blocks). */
  onWarning?: (message: string) => void;
}

const LOCAL = /^(localhost|127\.\d+\.\d+\.\d+)$/;

/** A value quoted for a message (control characters visible), cut to a readable length. */
function shown(value: string): string {
  return (
    JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value) +
    (value.length > 80 ? ` (${value.length} characters)` : '')
  );
}

/** A host name (RFC 1123 labels; `_` allowed, as ssh_config aliases use it) or an IPv4/IPv6 address: nothing a shell or resolver could misread. */
export function isHostAddress(address: string): boolean {
  if (address.length === 0 || address.length > 253) return false;
  if (isIP(address) !== 0) return true;
  return address.split('.').every((label) => /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label));
}

function expandHome(p: string, home: string, base: string): string {
  if (p === '~' || p.startsWith('~/')) return join(home, p.slice(1));
  return isAbsolute(p) ? p : resolve(base, p);
}

/** The launching machine, when there is no inventory: no SSH, processes started with execa. */
export function localHost(): HostSpec {
  return { name: hostname(), address: '127.0.0.1', local: true, devices: 'auto' };
}

function devicesOf(value: string | number[] | undefined, where: string): HostSpec['devices'] {
  if (value === undefined || value === 'auto') return 'auto';
  if (Array.isArray(value)) return parseDeviceList(value.join(','), where);
  return parseDeviceList(value, where);
}

/** `where` names the entry in messages: "file: hosts[1]" (YAML) or "file:3" (hostfile line). */
async function toHost(
  entry: HostEntry,
  where: string,
  file: string,
  settings: SshSettingsSource,
  home: string,
): Promise<HostSpec> {
  const base = dirname(file);
  if (!isHostAddress(entry.address))
    throw inputError(`${where}.address`, `${shown(entry.address)} is not a host name or IP address`);
  const local = LOCAL.test(entry.address);
  const explicit: Partial<ResolvedSsh> = {};
  if (entry.user !== undefined) explicit.user = entry.user;
  if (entry.port !== undefined) explicit.port = entry.port;
  if (entry.identity_file !== undefined) explicit.identityFiles = [expandHome(entry.identity_file, home, base)];
  if (entry.known_hosts !== undefined) explicit.knownHostsFiles = [expandHome(entry.known_hosts, home, base)];
  if (entry.strict_host_key_checking !== undefined) explicit.strictHostKeyChecking = entry.strict_host_key_checking;
  if (entry.proxy_jump !== undefined) explicit.proxyJump = entry.proxy_jump;
  let ssh: ResolvedSsh | undefined;
  try {
    // The launching machine is reached without SSH: nothing to resolve.
    ssh = local ? undefined : await settings.host(entry.address, explicit);
  } catch (err) {
    if (err instanceof NpurunError) throw inputError(where, err.message);
    throw err;
  }
  // An ssh_config alias stands for its HostName: that address is the server's identity in the rank table.
  const address = ssh && !isIPv4(entry.address) && isIPv4(ssh.hostname) ? ssh.hostname : entry.address;
  const host: HostSpec = {
    name: entry.name ?? entry.address,
    address,
    local,
    devices: devicesOf(entry.devices, `${where}.devices`),
  };
  if (ssh) host.ssh = ssh;
  if (entry.slots !== undefined) host.slots = entry.slots;
  return host;
}

export interface HostfileLine {
  address: string;
  slots?: number;
  /** 1-based line number, for messages. */
  line: number;
}

/**
 * DeepSpeed/MPI hostfile: one `host [slots=N]` per line, `#` comments, blank lines. Any other line is
 * an error naming its number: a mistyped line must never silently drop a host.
 */
export function parseHostfile(text: string, file: string): HostfileLine[] {
  const out: HostfileLine[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/#.*$/, '').trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    const [address, ...rest] = line.split(/\s+/) as [string, ...string[]];
    if (!isHostAddress(address)) {
      // JSON quoting shows control characters instead of printing them.
      throw inputError(where, `${shown(address)} is not a host name or IP address; expected "host slots=N"`);
    }
    let slots: number | undefined;
    for (const token of rest) {
      const m = /^slots=(.*)$/.exec(token);
      if (!m) throw inputError(where, `unexpected ${JSON.stringify(token)} after ${address}; expected "host slots=N"`);
      if (slots !== undefined) throw inputError(where, `slots given twice; expected "host slots=N"`);
      if (!/^\d+$/.test(m[1] as string))
        throw inputError(where, `slots=${m[1]} is not a whole number; expected "host slots=N"`);
      slots = Number(m[1]);
      if (slots < 1 || slots > 16)
        throw inputError(where, `slots=${slots} is out of range; expected 1 to 16 ranks per host`);
    }
    out.push(slots === undefined ? { address, line: i + 1 } : { address, slots, line: i + 1 });
  }
  return out;
}

/** YAML's shape, not just its syntax: a mapping key or a list item at the start of some line. */
function looksLikeYaml(text: string): boolean {
  return text.split(/\r?\n/).some((l) => /^\s*([A-Za-z_][\w-]*\s*:(\s|$)|-\s|\{)/.test(l.replace(/#.*$/, '')));
}

/**
 * Reads a hosts file: YAML (a mapping with `hosts:` and optional `spares:`, validated against
 * schemas/hosts.schema.json) or a DeepSpeed/MPI hostfile (`host slots=N` lines, no spares). Values in
 * the file win over ssh_config.
 */
export async function loadHostsFile(file: string, opts: InventoryOptions = {}): Promise<Inventory> {
  const home = opts.home ?? homedir();
  const settings = opts.settings ?? ownParserSource(opts.sshConfigText, home, opts.onWarning);
  const text = readInputText(file, 'hosts file', YAML_MAX_BYTES);
  if (text.includes('\0'))
    throw inputError(
      file,
      'not a hosts file (binary content): expected a YAML mapping with a `hosts:` list or "host slots=N" lines',
    );
  let parsed: unknown;
  let yamlBroken = false;
  try {
    parsed = parseYamlText(text, file);
  } catch (err) {
    // Hostile YAML (an alias bomb, deep nesting) is refused as it is; broken YAML may be a hostfile.
    if (err instanceof NpurunError && !/not valid YAML:/.test(err.message)) throw err;
    yamlBroken = true;
  }
  // `label` names an entry inside the file: "hosts[1]", "spares[0]" (YAML) or "line 3" (hostfile).
  let entries: { entry: HostEntry; where: string; label: string }[];
  let spareCount = 0;
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const inv = loadYamlFile(file, 'hosts.schema.json', 'hosts file') as HostsFile;
    const listed = (list: HostEntry[], key: string) =>
      list.map((e, i) => ({ entry: { ...inv.defaults, ...e }, where: `${file}: ${key}[${i}]`, label: `${key}[${i}]` }));
    spareCount = inv.spares?.length ?? 0;
    entries = [...listed(inv.hosts, 'hosts'), ...listed(inv.spares ?? [], 'spares')];
  } else if (Array.isArray(parsed) || (yamlBroken && looksLikeYaml(text))) {
    // Broken YAML: report its line and column; a YAML list: say what the top level must be.
    if (yamlBroken) loadYamlFile(file, 'hosts.schema.json', 'hosts file');
    throw inputError(
      file,
      'not a hosts file: expected a YAML mapping with a `hosts:` list (see hosts/two-servers.yaml) or "host slots=N" lines',
    );
  } else {
    entries = parseHostfile(text, file).map(({ line, ...entry }) => ({
      entry,
      where: `${file}:${line}`,
      label: `line ${line}`,
    }));
  }
  if (entries.length === 0) throw inputError(file, 'no hosts listed; expected at least one host');
  // Every host resolved at once: `ssh -G` bounds its own processes (transport/openssh.ts).
  const all = await Promise.all(entries.map(({ entry, where }) => toHost(entry, where, file, settings, home)));
  const seen = new Map<string, number>();
  all.forEach((h, i) => {
    for (const key of new Set([h.address, h.name])) {
      const prev = seen.get(key);
      if (prev !== undefined) {
        throw inputError(
          entries[i]?.where as string,
          `"${key}" is listed twice (also ${entries[prev]?.label}); expected each server once, as a host or as a spare`,
        );
      }
      seen.set(key, i);
    }
  });
  if (all.some((h) => h.local) && all.length > 1) {
    throw inputError(
      file,
      `mixes localhost with remote ${spareCount > 0 ? 'hosts or spares' : 'hosts'}: the remote ranks could not reach 127.0.0.1; expected this machine listed by its network address`,
    );
  }
  return { hosts: all.slice(0, all.length - spareCount), spares: all.slice(all.length - spareCount) };
}

/** The hosts of a hosts file (its spares aside): see `loadHostsFile`. */
export async function loadInventory(file: string, opts: InventoryOptions = {}): Promise<HostSpec[]> {
  return (await loadHostsFile(file, opts)).hosts;
}

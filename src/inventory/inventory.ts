import { readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseDeviceList } from '../devices/device-list.js';
import { isIPv4 } from '../devices/npu-smi.js';
import { inputError, NpurunError } from '../errors.js';
import type { HostSpec } from '../plan/types.js';
import { loadYamlFile } from '../schema.js';
import { parseSshConfig, resolveSshHost, type ResolvedSsh, type SshConfig } from './ssh-config.js';

interface HostSettings {
  user?: string;
  port?: number;
  identity_file?: string;
  known_hosts?: string;
  strict_host_key_checking?: 'yes' | 'accept-new' | 'no';
  proxy_jump?: string;
  devices?: string | number[];
}

interface HostsFile {
  defaults?: HostSettings;
  hosts: (HostSettings & { address: string; name?: string; slots?: number })[];
}

export interface InventoryOptions {
  /** Text of ~/.ssh/config (or --ssh-config); undefined = none. */
  sshConfigText?: string;
  home?: string;
}

const LOCAL = /^(localhost|127\.\d+\.\d+\.\d+)$/;

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

function toHost(
  entry: { address: string; name?: string; slots?: number } & HostSettings,
  index: number,
  file: string,
  config: SshConfig | undefined,
  home: string,
): HostSpec {
  const where = `${file}: hosts[${index}]`;
  const base = dirname(file);
  const local = LOCAL.test(entry.address);
  const explicit: Partial<ResolvedSsh> = {};
  if (entry.user) explicit.user = entry.user;
  if (entry.port) explicit.port = entry.port;
  if (entry.identity_file) explicit.identityFiles = [expandHome(entry.identity_file, home, base)];
  if (entry.known_hosts) explicit.knownHostsFiles = [expandHome(entry.known_hosts, home, base)];
  if (entry.strict_host_key_checking) explicit.strictHostKeyChecking = entry.strict_host_key_checking;
  if (entry.proxy_jump) explicit.proxyJump = entry.proxy_jump;
  const ssh = resolveSshHost(entry.address, config, explicit, home);
  // An ssh_config alias stands for its HostName: that address is the server's identity in the rank table.
  const address = !isIPv4(entry.address) && isIPv4(ssh.hostname) ? ssh.hostname : entry.address;
  const host: HostSpec = {
    name: entry.name ?? entry.address,
    address,
    local,
    devices: devicesOf(entry.devices, `${where}.devices`),
  };
  if (!local) host.ssh = ssh;
  if (entry.slots !== undefined) host.slots = entry.slots;
  return host;
}

/** DeepSpeed/MPI hostfile: `host slots=N` lines, `#` comments. Undefined when the text is not one. */
export function parseHostfile(text: string, file: string): { address: string; slots?: number }[] | undefined {
  const out: { address: string; slots?: number }[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/#.*$/, '').trim();
    if (line === '') continue;
    const m = /^(\S+)(?:\s+slots\s*=\s*(\S+))?$/.exec(line);
    if (!m || (m[1] as string).includes(':') || (m[1] as string).endsWith('-')) return undefined;
    if (m[2] !== undefined && !/^\d+$/.test(m[2])) throw inputError(`${file}:${i + 1}`, `slots=${m[2]} is not a whole number; expected "host slots=N"`);
    const slots = m[2] === undefined ? undefined : Number(m[2]);
    if (slots !== undefined && (slots < 1 || slots > 16)) throw inputError(`${file}:${i + 1}`, `slots=${slots} is out of range; expected 1 to 16 ranks per host`);
    out.push(slots === undefined ? { address: m[1] as string } : { address: m[1] as string, slots });
  }
  return out;
}

export function loadInventory(file: string, opts: InventoryOptions = {}): HostSpec[] {
  const home = opts.home ?? homedir();
  const config = opts.sshConfigText !== undefined ? parseSshConfig(opts.sshConfigText, home) : undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NpurunError('input', `${file}: cannot read hosts file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let parsed: unknown;
  let yamlBroken = false;
  try {
    parsed = parseYaml(text);
  } catch {
    yamlBroken = true;
  }
  let entries: HostsFile['hosts'];
  let defaults: HostSettings = {};
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const inv = loadYamlFile(file, 'hosts.schema.json', 'hosts file') as HostsFile;
    entries = inv.hosts;
    defaults = inv.defaults ?? {};
  } else {
    const lines = parseHostfile(text, file);
    // Not a hostfile and not parseable YAML: report the YAML error with its line and column.
    if (!lines && yamlBroken) loadYamlFile(file, 'hosts.schema.json', 'hosts file');
    if (!lines) {
      throw inputError(file, 'not a hosts file: expected YAML with a `hosts:` list (see hosts/two-servers.yaml) or "host slots=N" lines');
    }
    entries = lines;
  }
  if (entries.length === 0) throw inputError(file, 'no hosts listed; expected at least one');
  const hosts = entries.map((e, i) => toHost({ ...defaults, ...e }, i, file, config, home));
  const seen = new Map<string, number>();
  hosts.forEach((h, i) => {
    for (const key of [h.address, h.name]) {
      const prev = seen.get(key);
      if (prev !== undefined && prev !== i) throw inputError(`${file}: hosts[${i}]`, `"${key}" is listed twice (also hosts[${prev}]); each server once`);
      seen.set(key, i);
    }
  });
  if (hosts.some((h) => h.local) && hosts.length > 1) {
    throw inputError(file, 'mixes localhost with remote hosts: the remote ranks could not reach 127.0.0.1; list this machine by its network address');
  }
  return hosts;
}

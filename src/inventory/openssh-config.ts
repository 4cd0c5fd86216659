import { homedir, hostname as localHostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { inputError } from '../errors.js';
import { parseJumpSpec, parseSshConfig, resolveSshHost, type ResolvedSsh, type SshConfig } from './ssh-config.js';

/**
 * Host settings from OpenSSH itself: `ssh -G HOST` prints what ssh would use, with Match, Include,
 * tokens, IdentityAgent and multi-hop ProxyJump evaluated by ssh. This file reads that output (pure);
 * the process is spawned in transport/openssh.ts and handed in as an `SshConfigQuery`.
 *
 * StrictHostKeyChecking as `ssh -G` prints it, mapped to npurun's three answers:
 *   true -> yes, accept-new -> accept-new, false -> no,
 *   ask (ssh's default) -> yes: npurun never prompts, so an unknown key is refused, as `ask` does
 *   when nobody answers.
 */

/** `ssh -G [-F file] [-l user] [-p port] host`: its stdout, or an error naming the config. */
export type SshConfigQuery = (host: string, explicit: { user?: string; port?: number }) => Promise<string>;

/** Where a host's SSH settings come from: `ssh -G`, or npurun's own parser where no ssh client exists. */
export interface SshSettingsSource {
  readonly kind: 'openssh' | 'own-parser';
  /** A host of the inventory; values in `explicit` (from the hosts file) win. */
  host(alias: string, explicit: Partial<ResolvedSsh>): Promise<ResolvedSsh>;
  /** One ProxyJump hop, "[user@]host[:port]" or "ssh://[user@]host[:port]". */
  jump(spec: string): Promise<ResolvedSsh>;
}

/** The keywords npurun reads from `ssh -G`, lower case as it prints them; several values per key kept in order. */
export function parseSshGOutput(output: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const m = /^(\S+) (.*)$/.exec(line.trim());
    if (!m) continue;
    const key = m[1] as string;
    out.set(key, [...(out.get(key) ?? []), m[2] as string]);
  }
  return out;
}

/** `ssh -G`'s StrictHostKeyChecking (true, false, ask, accept-new) as npurun's yes / accept-new / no. */
export function strictnessOfSshG(value: string | undefined): ResolvedSsh['strictHostKeyChecking'] {
  if (value === 'false') return 'no';
  if (value === 'accept-new') return 'accept-new';
  // true, ask (never prompted) and anything newer: the strict answer.
  return 'yes';
}

interface TokenValues {
  home: string;
  alias: string;
  hostname: string;
  user: string;
  port: number;
}

/**
 * `ssh -G` prints IdentityFile as written (ssh expands it only when loading keys): `~` and the tokens
 * of ssh_config(5) TOKENS are expanded here as ssh does. %C, %j and %k are left as written.
 */
export function expandIdentityFile(path: string, t: TokenValues): string {
  const local = localHostname();
  const values: Record<string, string> = {
    '%': '%',
    d: t.home,
    h: t.hostname,
    i: String(userInfo().uid),
    L: local.split('.')[0] as string,
    l: local,
    n: t.alias,
    p: String(t.port),
    r: t.user,
    u: userInfo().username,
  };
  const tilde = path === '~' || path.startsWith('~/') ? t.home + path.slice(1) : path;
  return tilde.replace(/%(.)/g, (all, c: string) => values[c] ?? all);
}

/** One `ssh -G` answer as npurun's settings of `alias`. */
export function settingsFromSshG(alias: string, output: string, home = homedir()): ResolvedSsh {
  const g = parseSshGOutput(output);
  const one = (k: string): string | undefined => g.get(k)?.[0];
  const hostname = one('hostname') ?? alias;
  const user = one('user') ?? userInfo().username;
  const port = Number(one('port') ?? '22');
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw inputError('ssh -G', `port "${one('port')}" for host ${alias} is not a port number`);
  const identityFiles = (g.get('identityfile') ?? []).map((f) =>
    expandIdentityFile(f, { home, alias, hostname, user, port }),
  );
  const known = one('userknownhostsfile');
  const knownHostsFiles = known
    ? known.split(' ').filter(Boolean)
    : [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')];
  const proxyJump = one('proxyjump');
  const agent = one('identityagent');
  const settings: ResolvedSsh = {
    hostname,
    user,
    port,
    identityFiles,
    knownHostsFiles,
    strictHostKeyChecking: strictnessOfSshG(one('stricthostkeychecking')),
    ...(proxyJump && proxyJump.toLowerCase() !== 'none' ? { proxyJump } : {}),
    useAgent: agent?.toLowerCase() !== 'none',
  };
  // SSH_AUTH_SOCK (the word) means the environment's socket, as when IdentityAgent is unset.
  if (agent && agent.toLowerCase() !== 'none' && agent !== 'SSH_AUTH_SOCK') settings.identityAgent = agent;
  return settings;
}

/** Hosts-file values over what ssh_config gave. */
function withExplicit(resolved: ResolvedSsh, explicit: Partial<ResolvedSsh>): ResolvedSsh {
  const out: ResolvedSsh = { ...resolved };
  for (const [k, v] of Object.entries(explicit) as [keyof ResolvedSsh, ResolvedSsh[keyof ResolvedSsh]][]) {
    if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** Each answer asked once: 512 hosts behind one jump host resolve it once. */
function memo<T>(fn: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const seen = new Map<string, Promise<T>>();
  return (key) => {
    let p = seen.get(key);
    if (!p) {
      p = fn(key);
      seen.set(key, p);
    }
    return p;
  };
}

/** Settings from `ssh -G` (user and port from the hosts file go on its command line, so Match user and %r see them). */
export function openSshSource(query: SshConfigQuery, home = homedir()): SshSettingsSource {
  const ask = async (host: string, explicit: { user?: string; port?: number }) =>
    settingsFromSshG(host, await query(host, explicit), home);
  return {
    kind: 'openssh',
    async host(alias, explicit) {
      const cmdline: { user?: string; port?: number } = {};
      if (explicit.user !== undefined) cmdline.user = explicit.user;
      if (explicit.port !== undefined) cmdline.port = explicit.port;
      return withExplicit(await ask(alias, cmdline), explicit);
    },
    jump: memo(async (spec) => {
      const { host, ...cmdline } = parseJumpSpec(spec);
      return ask(host, cmdline);
    }),
  };
}

/** Settings from npurun's own ssh_config parser (no Match; ProxyJump hops resolved one by one by the transport). */
export function ownParserSource(
  configText: string | undefined,
  home = homedir(),
  onWarning?: (message: string) => void,
): SshSettingsSource {
  const config: SshConfig | undefined = configText !== undefined ? parseSshConfig(configText, home) : undefined;
  for (const w of config?.warnings ?? []) onWarning?.(`ssh_config: ${w}`);
  return {
    kind: 'own-parser',
    host: async (alias, explicit) => resolveSshHost(alias, config, explicit, home),
    jump: async (spec) => {
      const { host, ...explicit } = parseJumpSpec(spec);
      return resolveSshHost(host, config, explicit, home);
    },
  };
}

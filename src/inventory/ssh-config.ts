import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { SshSettings } from './types.js';
import { homedir, userInfo } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fileError, inputError } from '../errors.js';

/**
 * A small, honest reader of OpenSSH client configuration (ssh_config(5)) for the keywords a launcher
 * needs. Supported: `Host` blocks with patterns (`*`, `?`, `!negation`, several per line, matched
 * case-insensitively as ssh does), first obtained value wins, `HostName` (%h), `User`, `Port`,
 * `IdentityFile` (several; `~` and %d %u %h %r %%), `UserKnownHostsFile` (several per line),
 * `StrictHostKeyChecking` (yes/no/accept-new; ask and unknown values mean yes), `ProxyJump`,
 * `IdentityAgent` (none turns the agent off; a socket path or $VAR is used instead of SSH_AUTH_SOCK), `Include` (relative to ~/.ssh, globs in the last
 * component; inside a Host block its Host blocks apply only to hosts that block matches), quoted arguments and trailing `#` comments. `Match` blocks are skipped and reported in
 * `warnings`; every other keyword is ignored.
 */
export interface SshConfigBlock {
  patterns: string[];
  /** Patterns of the Host blocks an Include stood in: they must match too (OpenSSH's conditional include). */
  within?: string[][];
  /** Keyword (lower case) and its arguments, quotes removed. */
  options: [string, string[]][];
}

export interface SshConfig {
  blocks: SshConfigBlock[];
  warnings: string[];
}

/** The settings ssh_config gives a host: the same shape as a HostSpec's `ssh`. */
export type ResolvedSsh = SshSettings;

/** Arguments of one config line: whitespace-separated, "double quotes" group, an unquoted # starts a comment. */
export function splitConfigArgs(rest: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(rest)) !== null) {
    if (m[2]?.startsWith('#')) break;
    out.push(m[1] ?? (m[2] as string));
  }
  return out;
}

function globMatch(glob: string, name: string): boolean {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i').test(name);
}

function expandInclude(pattern: string, home: string): string[] {
  const path = pattern.startsWith('~')
    ? join(home, pattern.slice(1))
    : isAbsolute(pattern)
      ? pattern
      : join(home, '.ssh', pattern);
  const dir = dirname(path);
  const base = path.slice(dir.length + 1);
  if (!/[*?]/.test(base)) return existsSync(path) ? [path] : [];
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => globMatch(base, f))
    .sort()
    .map((f) => join(dir, f));
}

export function parseSshConfig(text: string, home = homedir(), depth = 0, within: string[][] = []): SshConfig {
  const config: SshConfig = { blocks: [{ patterns: ['*'], options: [] }], warnings: [] };
  const guarded = (patterns: string[]): SshConfigBlock =>
    within.length > 0 ? { patterns, options: [], within } : { patterns, options: [] };
  let current = config.blocks[0] as SshConfigBlock;
  let skipping = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    if (!m) continue;
    const key = (m[1] as string).toLowerCase();
    const args = splitConfigArgs(m[2] as string);
    if (key === 'host') {
      current = guarded(args);
      config.blocks.push(current);
      skipping = false;
    } else if (key === 'match') {
      config.warnings.push(`Match blocks are not supported and were skipped: "${line}"`);
      skipping = true;
    } else if (skipping) {
      continue;
    } else if (key === 'include') {
      if (depth >= 8) {
        config.warnings.push(`Include nested more than 8 deep was skipped: "${line}"`);
        continue;
      }
      for (const pattern of args) {
        for (const file of expandInclude(pattern, home)) {
          const inner = parseSshConfig(readFileSync(file, 'utf8'), home, depth + 1, [
            ...(current.within ?? []),
            current.patterns,
          ]);
          // An included file's top-level lines belong to the block that included it.
          current.options.push(...(inner.blocks[0] as SshConfigBlock).options);
          config.blocks.push(...inner.blocks.slice(1));
          config.warnings.push(...inner.warnings);
        }
      }
      // Lines after the Include still belong to the including block, but come after what the file added.
      current = { ...current, options: [] };
      config.blocks.push(current);
    } else if (args.length > 0) {
      current.options.push([key, args]);
    }
  }
  return config;
}

/** ssh_config(5) Host matching: some positive pattern matches and no negated one does. */
export function hostMatches(patterns: string[], name: string): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

/** Every occurrence of every option that applies to `alias`, in file order (the first one wins, like ssh). */
function optionsFor(config: SshConfig, alias: string): Map<string, string[][]> {
  const out = new Map<string, string[][]>();
  for (const block of config.blocks) {
    if (!hostMatches(block.patterns, alias) || !(block.within ?? []).every((p) => hostMatches(p, alias))) continue;
    for (const [k, v] of block.options) {
      const list = out.get(k) ?? [];
      list.push(v);
      out.set(k, list);
    }
  }
  return out;
}

interface TokenContext {
  home: string;
  localUser: string;
  host: string;
  remoteUser: string;
}

function expandTokens(s: string, ctx: TokenContext): string {
  const out = s === '~' || s.startsWith('~/') ? ctx.home + s.slice(1) : s;
  return out.replace(
    /%(.)/g,
    (_, c: string) => ({ d: ctx.home, u: ctx.localUser, h: ctx.host, r: ctx.remoteUser, '%': '%' })[c] ?? `%${c}`,
  );
}

function strictness(value: string | undefined): ResolvedSsh['strictHostKeyChecking'] {
  const v = (value ?? 'yes').toLowerCase();
  if (v === 'no' || v === 'off') return 'no';
  if (v === 'accept-new') return 'accept-new';
  // "ask" cannot prompt in a launcher: it means the strict answer.
  return 'yes';
}

/**
 * What ssh would use to reach `alias`. `explicit` holds values given in the inventory: they win over
 * ssh_config, which wins over ssh's defaults (login name, port 22, ~/.ssh/id_*, ~/.ssh/known_hosts,
 * strict host-key checking, the agent).
 */
export function resolveSshHost(
  alias: string,
  config: SshConfig | undefined,
  explicit: Partial<ResolvedSsh> = {},
  home = homedir(),
): ResolvedSsh {
  const opts = config ? optionsFor(config, alias) : new Map<string, string[][]>();
  const first = (k: string): string | undefined => opts.get(k)?.[0]?.[0];
  const localUser = userInfo().username;
  const hostname = explicit.hostname ?? (first('hostname') ?? alias).replace(/%h/g, alias);
  const user = explicit.user ?? first('user') ?? localUser;
  const ctx: TokenContext = { home, localUser, host: hostname, remoteUser: user };
  const portText = first('port');
  if (
    explicit.port === undefined &&
    portText !== undefined &&
    !(/^\d+$/.test(portText) && Number(portText) >= 1 && Number(portText) <= 65535)
  ) {
    throw inputError('ssh_config', `Port "${portText}" for host ${alias} is not a port number; expected 1 to 65535`);
  }
  const port = explicit.port ?? (portText !== undefined ? Number(portText) : 22);
  const identityFiles =
    explicit.identityFiles ??
    opts.get('identityfile')?.map((args) => expandTokens(args[0] as string, ctx)) ??
    ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(home, '.ssh', f));
  const knownHostsFiles = explicit.knownHostsFiles ??
    opts.get('userknownhostsfile')?.[0]?.map((f) => expandTokens(f, ctx)) ?? [
      join(home, '.ssh', 'known_hosts'),
      join(home, '.ssh', 'known_hosts2'),
    ];
  const strictHostKeyChecking = explicit.strictHostKeyChecking ?? strictness(first('stricthostkeychecking'));
  const proxyJump = explicit.proxyJump ?? first('proxyjump');
  const agent = first('identityagent');
  // IdentityAgent none turns the agent off; SSH_AUTH_SOCK (the word) keeps the environment's socket.
  const useAgent = explicit.useAgent ?? (agent === undefined || agent.toLowerCase() !== 'none');
  const identityAgent =
    explicit.identityAgent ??
    (useAgent && agent !== undefined && agent !== 'SSH_AUTH_SOCK' ? agentSocket(agent, ctx) : undefined);
  return {
    hostname,
    user,
    port,
    identityFiles,
    knownHostsFiles,
    strictHostKeyChecking,
    ...(proxyJump && proxyJump.toLowerCase() !== 'none' ? { proxyJump } : {}),
    useAgent,
    ...(identityAgent ? { identityAgent } : {}),
  };
}

/** An IdentityAgent socket: `$VAR` / `${VAR}` from the environment (unset: none), else a path with ~ and tokens. */
function agentSocket(value: string, ctx: TokenContext): string | undefined {
  const env = /^\$\{?([A-Za-z_]\w*)\}?$/.exec(value);
  return env ? process.env[env[1] as string] || undefined : expandTokens(value, ctx);
}

/** A ProxyJump hop "[user@]host[:port]" (or its ssh:// URI form) split into its parts. */
export function parseJumpSpec(spec: string): { host: string; user?: string; port?: number } {
  const m = /^(?:ssh:\/\/)?(?:([^@]+)@)?(\[[^\]]+\]|[^:@/]+)(?::(\d+))?\/?$/.exec(spec.trim());
  if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
    throw inputError('ProxyJump', `"${spec}" is not [user@]host[:port]`);
  }
  const out: { host: string; user?: string; port?: number } = { host: (m[2] as string).replace(/^\[|\]$/g, '') };
  if (m[1]) out.user = m[1];
  if (m[3]) out.port = Number(m[3]);
  return out;
}

/** A ProxyJump hop resolved through ssh_config like any host. */
export function resolveJumpSpec(spec: string, config: SshConfig | undefined, home = homedir()): ResolvedSsh {
  const { host, ...explicit } = parseJumpSpec(spec);
  return resolveSshHost(host, config, explicit, home);
}

/** The text of the ssh_config to honour: FILE (--ssh-config, which must exist), else ~/.ssh/config if any. */
export function readSshConfig(file: string | undefined, home = homedir()): string | undefined {
  const path = file ?? join(home, '.ssh', 'config');
  if (file === undefined && !existsSync(path)) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw fileError(file !== undefined ? `--ssh-config ${file}` : path, 'cannot read the ssh_config', err);
  }
}

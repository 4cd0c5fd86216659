import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { dirname, join, isAbsolute } from 'node:path';

/**
 * A small, honest reader of OpenSSH client configuration (ssh_config(5)) for the keywords a launcher
 * needs: Host blocks with patterns (`*`, `?`, `!negation`, several per line), first obtained value
 * wins, HostName (%h), User, Port, IdentityFile (several; ~ and %d %u %h %r %%), UserKnownHostsFile,
 * StrictHostKeyChecking, ProxyJump, IdentityAgent, Include (relative to ~/.ssh, globs in the last
 * component). `Match` blocks are skipped (reported in `warnings`).
 */
export interface SshConfigBlock {
  patterns: string[];
  options: [string, string][];
}

export interface SshConfig {
  blocks: SshConfigBlock[];
  warnings: string[];
}

export interface ResolvedSsh {
  hostname: string;
  user: string;
  port: number;
  identityFiles: string[];
  knownHostsFiles: string[];
  strictHostKeyChecking: 'yes' | 'accept-new' | 'no';
  proxyJump?: string;
  useAgent: boolean;
}

function splitArgs(rest: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(rest)) !== null) out.push(m[1] ?? (m[2] as string));
  return out;
}

function globMatch(glob: string, name: string): boolean {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`).test(name);
}

function expandInclude(pattern: string, home: string): string[] {
  const path = pattern.startsWith('~') ? join(home, pattern.slice(1)) : isAbsolute(pattern) ? pattern : join(home, '.ssh', pattern);
  const dir = dirname(path);
  const base = path.slice(dir.length + 1);
  if (!/[*?]/.test(base)) return existsSync(path) ? [path] : [];
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => globMatch(base, f)).sort().map((f) => join(dir, f));
}

export function parseSshConfig(text: string, home = homedir(), depth = 0): SshConfig {
  const config: SshConfig = { blocks: [{ patterns: ['*'], options: [] }], warnings: [] };
  let current = config.blocks[0] as SshConfigBlock;
  let skipping = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    if (!m) continue;
    const key = (m[1] as string).toLowerCase();
    const value = (m[2] as string).trim();
    if (key === 'host') {
      current = { patterns: splitArgs(value), options: [] };
      config.blocks.push(current);
      skipping = false;
    } else if (key === 'match') {
      config.warnings.push(`Match blocks are not supported and were skipped: "${line}"`);
      skipping = true;
    } else if (skipping) {
      continue;
    } else if (key === 'include' && depth < 8) {
      for (const pattern of splitArgs(value)) {
        for (const file of expandInclude(pattern, home)) {
          const inner = parseSshConfig(readFileSync(file, 'utf8'), home, depth + 1);
          // Included top-level options belong to the block that included them.
          current.options.push(...(inner.blocks[0] as SshConfigBlock).options);
          config.blocks.push(...inner.blocks.slice(1));
          config.warnings.push(...inner.warnings);
        }
      }
    } else {
      current.options.push([key, value]);
    }
  }
  return config;
}

export function hostMatches(patterns: string[], name: string): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

/** Every option that applies to `alias`, in file order (first obtained value wins, like ssh). */
function optionsFor(config: SshConfig, alias: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const block of config.blocks) {
    if (!hostMatches(block.patterns, alias)) continue;
    for (const [k, v] of block.options) {
      const list = out.get(k) ?? [];
      list.push(v);
      out.set(k, list);
    }
  }
  return out;
}

function expandTokens(s: string, ctx: { home: string; user: string; host: string; remoteUser: string }): string {
  let out = s.startsWith('~/') || s === '~' ? ctx.home + s.slice(1) : s;
  out = out.replace(/%(.)/g, (_, c: string) => ({ d: ctx.home, u: ctx.user, h: ctx.host, r: ctx.remoteUser, '%': '%' })[c] ?? `%${c}`);
  return out;
}

/**
 * What ssh would use to reach `alias`. `explicit` holds values given in the inventory: they win over
 * ssh_config, which wins over the defaults.
 */
export function resolveSshHost(alias: string, config: SshConfig | undefined, explicit: Partial<ResolvedSsh> = {}, home = homedir()): ResolvedSsh {
  const opts = config ? optionsFor(config, alias) : new Map<string, string[]>();
  const first = (k: string) => opts.get(k)?.[0];
  const localUser = userInfo().username;
  const hostname = explicit.hostname ?? (first('hostname') ?? alias).replace(/%h/g, alias);
  const user = explicit.user ?? first('user') ?? localUser;
  const ctx = { home, user: localUser, host: hostname, remoteUser: user };
  const port = explicit.port ?? (first('port') ? Number(first('port')) : 22);
  const identityFiles =
    explicit.identityFiles ??
    (opts.get('identityfile')?.map((f) => expandTokens(f, ctx)) ??
      ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(home, '.ssh', f)));
  const knownHostsFiles =
    explicit.knownHostsFiles ??
    (opts.get('userknownhostsfile')?.flatMap((v) => splitArgs(v)).map((f) => expandTokens(f, ctx)) ?? [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')]);
  const strictRaw = (first('stricthostkeychecking') ?? 'yes').toLowerCase();
  const strictHostKeyChecking = explicit.strictHostKeyChecking ?? (strictRaw === 'no' || strictRaw === 'off' ? 'no' : strictRaw === 'accept-new' ? 'accept-new' : 'yes');
  const proxyJump = explicit.proxyJump ?? first('proxyjump');
  const agent = first('identityagent');
  const useAgent = explicit.useAgent ?? (agent ? agent.toLowerCase() !== 'none' : true);
  return {
    hostname,
    user,
    port,
    identityFiles,
    knownHostsFiles,
    strictHostKeyChecking,
    ...(proxyJump && proxyJump.toLowerCase() !== 'none' ? { proxyJump } : {}),
    useAgent,
  };
}

/** A ProxyJump hop "[user@]host[:port]" resolved through ssh_config like any host. */
export function resolveJumpSpec(spec: string, config: SshConfig | undefined, home = homedir()): ResolvedSsh {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec.trim());
  if (!m) throw new Error(`ProxyJump "${spec}" is not [user@]host[:port]`);
  const host = (m[2] as string).replace(/^\[|\]$/g, '');
  const explicit: Partial<ResolvedSsh> = {};
  if (m[1]) explicit.user = m[1];
  if (m[3]) explicit.port = Number(m[3]);
  return resolveSshHost(host, config, explicit, home);
}

import { createHmac } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

/**
 * OpenSSH known_hosts, read the way ssh(1) reads it: plain and hashed (`|1|salt|hash`) host patterns,
 * `[host]:port` for non-22 ports, `*`/`?` wildcards, `!negation`, and the `@revoked` marker.
 * `@cert-authority` lines are skipped (host certificates are not supported).
 */
export interface KnownHostEntry {
  file: string;
  line: number;
  marker: 'revoked' | 'cert-authority' | null;
  patterns: string;
  keyType: string;
  key: Buffer;
}

export type HostKeyVerdict =
  | { status: 'match'; entry: KnownHostEntry }
  | { status: 'mismatch'; entries: KnownHostEntry[] }
  | { status: 'revoked'; entry: KnownHostEntry }
  | { status: 'unknown' };

export function parseKnownHosts(text: string, file: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') {
      marker = fields[0] === '@revoked' ? 'revoked' : 'cert-authority';
      fields.shift();
    }
    const [patterns, keyType, keyB64] = fields;
    if (!patterns || !keyType || !keyB64) return;
    entries.push({ file, line: i + 1, marker, patterns, keyType, key: Buffer.from(keyB64, 'base64') });
  });
  return entries;
}

/** The name ssh looks up: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** Whether a known_hosts pattern list (comma separated, may be hashed) names this host. */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    const digest = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return digest === hash;
  }
  let matched = false;
  for (const p of patterns.split(',')) {
    if (p.startsWith('!')) {
      if (globToRegExp(p.slice(1)).test(name)) return false;
    } else if (globToRegExp(p).test(name)) {
      matched = true;
    }
  }
  return matched;
}

export function readKnownHosts(files: string[]): KnownHostEntry[] {
  return files.flatMap((f) => (existsSync(f) ? parseKnownHosts(readFileSync(f, 'utf8'), f) : []));
}

/** The key type named inside an SSH public key blob (its first string). */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) return '';
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('latin1');
}

export function verifyHostKey(entries: KnownHostEntry[], host: string, port: number, blob: Buffer): HostKeyVerdict {
  const name = knownHostsName(host, port);
  const forHost = entries.filter((e) => e.marker !== 'cert-authority' && patternsMatch(e.patterns, name));
  const revoked = forHost.find((e) => e.marker === 'revoked' && e.key.equals(blob));
  if (revoked) return { status: 'revoked', entry: revoked };
  const match = forHost.find((e) => e.marker === null && e.key.equals(blob));
  if (match) return { status: 'match', entry: match };
  // Like ssh, only a key of the same type that differs is a mismatch; other types are just not known.
  const sameType = forHost.filter((e) => e.marker === null && e.keyType === keyTypeOfBlob(blob));
  if (sameType.length > 0) return { status: 'mismatch', entries: sameType };
  return { status: 'unknown' };
}

/** For StrictHostKeyChecking=accept-new: record a first-seen key, as ssh does. */
export function appendKnownHost(file: string, host: string, port: number, blob: Buffer): void {
  appendFileSync(file, `${knownHostsName(host, port)} ${keyTypeOfBlob(blob)} ${blob.toString('base64')}\n`, {
    mode: 0o600,
  });
}

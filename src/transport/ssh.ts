import { existsSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import ssh2, { type AnyAuthMethod, type Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { NpurunError } from '../errors.js';
import type { HostSpec } from '../plan/types.js';
import { GUARD_BOOTSTRAP, guardPreamble, type GuardSpec } from './guard.js';
import { Heartbeat, guardControl } from './heartbeat.js';
import { appendKnownHost, readKnownHosts, verifyHostKey } from './known-hosts.js';
import { sha256 } from './local.js';
import type { CommandResult, DirEntry, HostTransport, RankEnd, RankProcess } from './types.js';

// ssh2 is CommonJS: under Node's ESM loader only its default export is reliable.
const { Client: SshClient, utils } = ssh2;

export type SshSettings = NonNullable<HostSpec['ssh']>;

export interface SshOptions {
  readyTimeoutMs?: number;
  /** SSH keepalive: a dead link is noticed after about interval x countMax. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /**
   * Rank channels per connection. A stock sshd allows 10 sessions per connection (MaxSessions), and
   * the control connection (probes, SFTP) is separate, so 8 keeps a margin on an unmodified server.
   */
  ranksPerConnection?: number;
  /** Resolves a ProxyJump entry ("user@host:port" or an ssh_config alias) to its own settings. */
  resolveJump?: (jump: string) => SshSettings;
}

const DEFAULTS = { readyTimeoutMs: 15_000, keepaliveIntervalMs: 1000, keepaliveCountMax: 3, ranksPerConnection: 8 };

/** POSIX single-quote quoting, for the few paths npurun itself puts on a remote command line. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

interface OpenClient {
  client: Client;
  /** Connections this one depends on (ProxyJump hops), closed with it. */
  hops: Client[];
}

function describeTarget(ssh: SshSettings): string {
  return `${ssh.user}@${ssh.hostname}:${ssh.port}`;
}

function authMethods(ssh: SshSettings): { methods: AnyAuthMethod[]; tried: string[] } {
  const methods: AnyAuthMethod[] = [];
  const tried: string[] = [];
  const agent = process.env.SSH_AUTH_SOCK;
  if (ssh.useAgent && agent) {
    methods.push({ type: 'agent', username: ssh.user, agent });
    tried.push('ssh-agent');
  }
  for (const file of ssh.identityFiles) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file);
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) {
      // An encrypted key without agent is skipped (npurun never prompts), but said so.
      tried.push(`${file} (unusable: ${parsed.message})`);
      continue;
    }
    methods.push({ type: 'publickey', username: ssh.user, key: text });
    tried.push(file);
  }
  return { methods, tried };
}

function connectOne(ssh: SshSettings, opts: Required<Omit<SshOptions, 'resolveJump'>>, sock?: Duplex): Promise<Client> {
  const target = describeTarget(ssh);
  const { methods, tried } = authMethods(ssh);
  if (methods.length === 0) {
    return Promise.reject(
      new NpurunError('unreachable', `${target}: no usable SSH identity (looked at ${ssh.identityFiles.join(', ') || 'nothing'}; no ssh-agent)`, {
        hint: 'set identity_file in the hosts file or IdentityFile in ~/.ssh/config, or start ssh-agent',
      }),
    );
  }
  return new Promise((resolve, reject) => {
    const client = new SshClient();
    let hostKeyProblem: string | undefined;
    const config: ConnectConfig = {
      host: ssh.hostname,
      port: ssh.port,
      username: ssh.user,
      readyTimeout: opts.readyTimeoutMs,
      keepaliveInterval: opts.keepaliveIntervalMs,
      keepaliveCountMax: opts.keepaliveCountMax,
      authHandler: methods,
      hostVerifier: (key: Buffer) => {
        const verdict = verifyHostKey(readKnownHosts(ssh.knownHostsFiles), ssh.hostname, ssh.port, key);
        if (verdict.status === 'match') return true;
        if (verdict.status === 'mismatch') {
          const where = verdict.entries.map((e) => `${e.file}:${e.line}`).join(', ');
          hostKeyProblem = `host key does not match the one recorded in ${where}: someone may be intercepting the connection, or the host was reinstalled`;
          return false;
        }
        if (verdict.status === 'revoked') {
          hostKeyProblem = `host key is marked @revoked in ${verdict.entry.file}:${verdict.entry.line}`;
          return false;
        }
        if (ssh.strictHostKeyChecking === 'no') return true;
        if (ssh.strictHostKeyChecking === 'accept-new' && ssh.knownHostsFiles[0]) {
          appendKnownHost(ssh.knownHostsFiles[0], ssh.hostname, ssh.port, key);
          return true;
        }
        hostKeyProblem = `host key is not in ${ssh.knownHostsFiles.join(', ')} (strict host-key checking)`;
        return false;
      },
    };
    if (sock) config.sock = sock;
    client.once('ready', () => resolve(client));
    client.once('error', (err: Error & { level?: string; code?: string }) => {
      let why = err.message;
      if (hostKeyProblem) why = hostKeyProblem;
      else if (err.code === 'ECONNREFUSED') why = `connection refused (is sshd running on port ${ssh.port}?)`;
      else if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') why = 'no route to host';
      else if (/Timed out/i.test(err.message)) why = `no answer within ${Math.round(opts.readyTimeoutMs / 1000)} s`;
      else if (err.level === 'client-authentication') why = `authentication failed for user ${ssh.user} (tried ${tried.join(', ')})`;
      const hint = hostKeyProblem
        ? `check the key with the host's administrator, then fix known_hosts (ssh-keygen -R ${ssh.hostname}; ssh-keyscan -p ${ssh.port} ${ssh.hostname})`
        : undefined;
      reject(new NpurunError('unreachable', `${target}: ${why}`, hint ? { hint } : {}));
    });
    client.connect(config);
  });
}

async function openClient(ssh: SshSettings, options: SshOptions): Promise<OpenClient> {
  const opts = { ...DEFAULTS, ...options };
  if (!ssh.proxyJump || ssh.proxyJump === 'none') return { client: await connectOne(ssh, opts), hops: [] };
  if (!options.resolveJump) throw new NpurunError('input', `${ssh.hostname}: ProxyJump ${ssh.proxyJump} given but no way to resolve it`);
  // "a,b" means through a, then b: connect to the last hop through the ones before it.
  const jumps = ssh.proxyJump.split(',');
  const lastJump = jumps.pop() as string;
  const jumpSettings = options.resolveJump(lastJump);
  const through = await openClient(jumps.length ? { ...jumpSettings, proxyJump: jumps.join(',') } : { ...jumpSettings, proxyJump: undefined }, options);
  const stream = await new Promise<Duplex>((resolve, reject) =>
    through.client.forwardOut('127.0.0.1', 0, ssh.hostname, ssh.port, (err, ch) =>
      err ? reject(new NpurunError('unreachable', `${describeTarget(ssh)}: jump host ${lastJump} cannot reach it: ${err.message}`)) : resolve(ch),
    ),
  );
  const client = await connectOne(ssh, opts, stream);
  return { client, hops: [through.client, ...through.hops] };
}

interface RankConnection {
  open: OpenClient;
  channels: number;
}

/** A remote host over ssh2: one control connection, plus rank connections of at most 8 channels each. */
export class SshTransport implements HostTransport {
  private readonly heartbeat = new Heartbeat();
  private readonly rankConnections: RankConnection[] = [];
  private pendingConnection: Promise<RankConnection> | undefined;
  private sftpSession: Promise<SFTPWrapper> | undefined;
  private readonly lostListeners: ((reason: string) => void)[] = [];
  private lostReason: string | undefined;
  private closing = false;

  private constructor(
    readonly host: HostSpec,
    private readonly settings: SshSettings,
    private readonly control: OpenClient,
    private readonly options: SshOptions,
  ) {
    this.watch(control.client);
  }

  static async connect(host: HostSpec, options: SshOptions = {}): Promise<SshTransport> {
    if (!host.ssh) throw new NpurunError('input', `${host.name}: no SSH settings for a remote host`);
    try {
      return new SshTransport(host, host.ssh, await openClient(host.ssh, options), options);
    } catch (err) {
      if (err instanceof NpurunError) throw new NpurunError(err.kind, `host ${host.name}: ${err.message}`, err.hint ? { hint: err.hint } : {});
      throw err;
    }
  }

  private watch(client: Client): void {
    const lost = (why: string) => {
      if (this.closing || this.lostReason) return;
      this.lostReason = why;
      for (const l of this.lostListeners) l(why);
    };
    client.on('error', (err: Error) => lost(`connection to ${this.host.name} failed: ${err.message}`));
    client.on('close', () => lost(`connection to ${this.host.name} closed`));
  }

  onLost(listener: (reason: string) => void): void {
    this.lostListeners.push(listener);
  }

  exec(command: string, input = ''): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      this.control.client.exec(command, (err, ch) => {
        if (err) return reject(new NpurunError('unreachable', `host ${this.host.name}: cannot run a command: ${err.message}`));
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let code: number | null = null;
        let signal: string | null = null;
        ch.on('data', (b: Buffer) => out.push(b));
        ch.stderr.on('data', (b: Buffer) => errOut.push(b));
        ch.on('exit', (c: number | null, s?: string) => {
          code = c;
          signal = s ?? null;
        });
        ch.on('close', () =>
          resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errOut).toString('utf8'), code, signal }),
        );
        ch.end(input);
      });
    });
  }

  private async rankConnection(): Promise<RankConnection> {
    const limit = this.options.ranksPerConnection ?? DEFAULTS.ranksPerConnection;
    const free = this.rankConnections.find((c) => c.channels < limit);
    if (free) return free;
    // One connection opened at a time, so ranks started together share it instead of racing.
    if (!this.pendingConnection) {
      this.pendingConnection = openClient(this.settings, this.options).then((open) => {
        this.watch(open.client);
        const conn = { open, channels: 0 };
        this.rankConnections.push(conn);
        this.pendingConnection = undefined;
        return conn;
      });
      this.pendingConnection.catch(() => {
        this.pendingConnection = undefined;
      });
    }
    await this.pendingConnection;
    return this.rankConnection();
  }

  async startRank(spec: GuardSpec): Promise<RankProcess> {
    const conn = await this.rankConnection();
    conn.channels++;
    const ch = await new Promise<ClientChannel>((resolve, reject) =>
      conn.open.client.exec(GUARD_BOOTSTRAP, (err, channel) => {
        if (err) {
          conn.channels--;
          reject(new NpurunError('unreachable', `host ${this.host.name}: cannot open a channel for rank ${spec.label}: ${err.message}`));
        } else resolve(channel);
      }),
    );
    ch.write(guardPreamble(spec));
    const control = guardControl(ch);
    this.heartbeat.add(control);
    let code: number | null = null;
    let signal: string | null = null;
    let exited = false;
    ch.on('exit', (c: number | null, s?: string) => {
      exited = true;
      code = c;
      signal = s ?? null;
    });
    const ended = new Promise<RankEnd>((resolve) => {
      ch.on('close', () => {
        this.heartbeat.remove(control);
        conn.channels--;
        resolve({ code, signal, lost: !exited });
      });
    });
    return { stdout: ch, stderr: ch.stderr, ended, stop: (grace) => control.send(`TERM ${grace}`), kill: () => control.send('KILL') };
  }

  private sftp(): Promise<SFTPWrapper> {
    this.sftpSession ??= new Promise((resolve, reject) =>
      this.control.client.sftp((err, sftp) => (err ? reject(new NpurunError('unreachable', `host ${this.host.name}: SFTP: ${err.message}`)) : resolve(sftp))),
    );
    return this.sftpSession;
  }

  /** Everything over SFTP (no shell started): create the directory, write, read back and compare SHA-256. */
  async putFile(path: string, data: Buffer, mode = 0o644): Promise<void> {
    const sftp = await this.sftp();
    const fail = (what: string, err: Error) => new NpurunError('runtime', `host ${this.host.name}: cannot ${what}: ${err.message}`);
    const parts = path.split('/').slice(1, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = '/' + parts.slice(0, i).join('/');
      await new Promise<void>((resolve, reject) =>
        sftp.mkdir(dir, { mode: 0o700 }, (err) => {
          // Status 4 (failure) is what OpenSSH answers for an existing directory: check it is one.
          if (!err) return resolve();
          sftp.stat(dir, (statErr, st) => (!statErr && st.isDirectory() ? resolve() : reject(fail(`create ${dir}`, err))));
        }),
      );
    }
    await new Promise<void>((resolve, reject) => sftp.writeFile(path, data, { mode }, (err) => (err ? reject(fail(`write ${path}`, err)) : resolve())));
    const back = await new Promise<Buffer>((resolve, reject) => sftp.readFile(path, (err, buf) => (err ? reject(fail(`read back ${path}`, err)) : resolve(buf))));
    if (!sha256(back).equals(sha256(data))) {
      throw new NpurunError('runtime', `host ${this.host.name}: ${path} has SHA-256 ${sha256(back).toString('hex')} after copying, expected ${sha256(data).toString('hex')}`);
    }
  }

  async listDir(dir: string): Promise<DirEntry[] | null> {
    const sftp = await this.sftp();
    return new Promise((resolve, reject) =>
      sftp.readdir(dir, (err, list) => {
        if (err) {
          // SFTP status 2 = no such file.
          if ((err as Error & { code?: number }).code === 2) resolve(null);
          else reject(new NpurunError('runtime', `host ${this.host.name}: cannot list ${dir}: ${err.message}`));
          return;
        }
        resolve(
          list
            .filter((e) => e.longname.startsWith('-'))
            .map((e) => ({ name: e.filename, size: e.attrs.size, mtimeMs: e.attrs.mtime * 1000 })),
        );
      }),
    );
  }

  async removeFile(path: string): Promise<void> {
    const sftp = await this.sftp();
    await new Promise<void>((resolve, reject) =>
      sftp.unlink(path, (err) => {
        if (err && (err as Error & { code?: number }).code !== 2) reject(new NpurunError('runtime', `host ${this.host.name}: cannot remove ${path}: ${err.message}`));
        else resolve();
      }),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    this.heartbeat.stop();
    for (const c of [this.control, ...this.rankConnections.map((r) => r.open)]) {
      c.client.end();
      for (const hop of c.hops) hop.end();
    }
  }
}

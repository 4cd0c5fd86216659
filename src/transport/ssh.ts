import { existsSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import ssh2, { type AnyAuthMethod, type Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { NpurunError } from '../errors.js';
import type { HostSpec, SshSettings } from '../inventory/types.js';
import { AgentClient, agentCommand, type AgentHello } from './agent-client.js';
import { appendKnownHost, readKnownHosts, verifyHostKey } from './known-hosts.js';
import { AgentTransport } from './agent-transport.js';
import { trace } from '../trace.js';

// ssh2 is CommonJS: under Node's ESM loader only its default export is reliable.
const { Client: SshClient, utils } = ssh2;

export type { SshSettings };

export interface SshOptions {
  readyTimeoutMs?: number;
  /** SSH keepalive: a dead link is noticed after about interval x countMax. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** How long the agent may take to say hello (the user's login shell runs first). */
  agentStartTimeoutMs?: number;
  /** Resolves a ProxyJump entry ("user@host:port" or an ssh_config alias) to its own settings. */
  resolveJump?: (jump: string) => Promise<SshSettings>;
}

const DEFAULTS = {
  readyTimeoutMs: 15_000,
  keepaliveIntervalMs: 1000,
  keepaliveCountMax: 3,
  agentStartTimeoutMs: 120_000,
};

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
  const agent = ssh.identityAgent ?? process.env.SSH_AUTH_SOCK;
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
      new NpurunError(
        'unreachable',
        `${target}: no usable SSH identity (looked at ${ssh.identityFiles.join(', ') || 'nothing'}; no ssh-agent)`,
        {
          hint: 'set identity_file in the hosts file or IdentityFile in ~/.ssh/config, or start ssh-agent',
        },
      ),
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
    // ssh2 can emit more than one 'error' (a timeout, then "connection lost before handshake" as the
    // socket closes): every one after the first is already answered, and must not crash npurun.
    client.on('error', () => {});
    client.once('ready', () => resolve(client));
    client.once('error', (err: Error & { level?: string; code?: string }) => {
      client.end();
      let why = err.message;
      if (hostKeyProblem) why = hostKeyProblem;
      else if (err.code === 'ECONNREFUSED') why = `connection refused (is sshd running on port ${ssh.port}?)`;
      else if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') why = 'no route to host';
      else if (/Timed out/i.test(err.message)) why = `no answer within ${Math.round(opts.readyTimeoutMs / 1000)} s`;
      else if (err.level === 'client-authentication')
        why = `authentication failed for user ${ssh.user} (tried ${tried.join(', ')})`;
      const hint = hostKeyProblem
        ? `check the key with the host's administrator, then fix known_hosts (ssh-keygen -R ${ssh.hostname}; ssh-keyscan -p ${ssh.port} ${ssh.hostname})`
        : undefined;
      reject(new NpurunError('unreachable', `${target}: ${why}`, hint ? { hint } : {}));
    });
    client.connect(config);
  });
}

async function openClient(ssh: SshSettings, options: SshOptions, depth = 0): Promise<OpenClient> {
  const opts = { ...DEFAULTS, ...options };
  if (!ssh.proxyJump || ssh.proxyJump === 'none') return { client: await connectOne(ssh, opts), hops: [] };
  if (!options.resolveJump)
    throw new NpurunError('input', `${ssh.hostname}: ProxyJump ${ssh.proxyJump} given but no way to resolve it`);
  if (depth >= 8)
    throw new NpurunError(
      'input',
      `${describeTarget(ssh)}: ProxyJump chain longer than 8 hops (does a jump host's ProxyJump lead back to itself?)`,
    );
  // "a,b" means through a, then b: connect to the last hop through the ones before it. As in ssh, the
  // first hop of a chain follows its own ssh_config ProxyJump; a later hop is reached through the chain.
  const jumps = ssh.proxyJump.split(',');
  const lastJump = jumps.pop() as string;
  const jumpSettings = await options.resolveJump(lastJump);
  const through = await openClient(
    jumps.length ? { ...jumpSettings, proxyJump: jumps.join(',') } : jumpSettings,
    options,
    depth + 1,
  );
  try {
    const stream = await new Promise<Duplex>((resolve, reject) =>
      through.client.forwardOut('127.0.0.1', 0, ssh.hostname, ssh.port, (err, ch) =>
        err
          ? reject(
              new NpurunError(
                'unreachable',
                `${describeTarget(ssh)}: jump host ${lastJump} cannot reach it: ${err.message}`,
              ),
            )
          : resolve(ch),
      ),
    );
    const client = await connectOne(ssh, opts, stream);
    return { client, hops: [through.client, ...through.hops] };
  } catch (err) {
    closeClient(through);
    throw err;
  }
}

/** A remote host over ssh2: one connection, one channel running the npurun agent (one login shell per host). */
export class SshTransport extends AgentTransport {
  private constructor(
    host: HostSpec,
    agent: AgentClient,
    hello: AgentHello,
    private readonly open: OpenClient,
  ) {
    super(host, agent, hello);
    const lost = (why: string) => this.lost(why);
    open.client.on('error', (err: Error) => lost(`connection to ${host.name} failed: ${err.message}`));
    open.client.on('close', () => lost(`connection to ${host.name} closed`));
  }

  static async connect(host: HostSpec, options: SshOptions = {}): Promise<SshTransport> {
    if (!host.ssh) throw new NpurunError('input', `${host.name}: no SSH settings for a remote host`);
    let open: OpenClient | undefined;
    try {
      open = await openClient(host.ssh, options);
      const client = open.client;
      trace(`ssh: ${host.name}: connected`);
      const channel = await new Promise<ClientChannel>((resolve, reject) =>
        client.exec(agentCommand(), (err, ch) =>
          err ? reject(new NpurunError('unreachable', `cannot start the npurun agent: ${err.message}`)) : resolve(ch),
        ),
      );
      const agent = new AgentClient(channel, channel, { name: host.name }, channel.stderr);
      const hello = await agent.start(options.agentStartTimeoutMs);
      return new SshTransport(host, agent, hello, open);
    } catch (err) {
      if (open) closeClient(open);
      if (err instanceof NpurunError) {
        const message = err.message.startsWith(`host ${host.name}: `)
          ? err.message
          : `host ${host.name}: ${err.message}`;
        throw new NpurunError(err.kind, message, err.hint ? { hint: err.hint } : {});
      }
      throw err;
    }
  }

  override async close(): Promise<void> {
    await super.close();
    closeClient(this.open);
  }
}

function closeClient(open: OpenClient): void {
  open.client.end();
  for (const hop of open.hops) hop.end();
}

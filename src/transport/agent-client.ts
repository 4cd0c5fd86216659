/**
 * The launcher's side of the host agent (src/agent/agent.py): one agent per host, over one SSH channel
 * or a local pipe, carrying requests (run a command, put a file, list a directory, start ranks, stop)
 * and every rank's output, framed and flow-controlled per rank. See agent.py for the wire format.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { NpurunError } from '../errors.js';
import type {
  AgentHello,
  AgentRun,
  CommandResult,
  DirEntry,
  RankDump,
  RankEnd,
  RankLaunch,
  RankProcess,
} from './types.js';

export type { AgentHello } from './types.js';

const HEADER_SIZE = 9;

const programs = new Map<string, Buffer>();
/** A host-side Python program, read from the package at run time (src/agent/; dist/ sits beside src/). */
export function hostProgram(name: 'agent.py' | 'leftovers.py'): Buffer {
  let source = programs.get(name);
  if (!source) {
    source = readFileSync(new URL(`../../src/agent/${name}`, import.meta.url));
    programs.set(name, source);
  }
  return source;
}

/** What the agent's bootstrap reads from stdin: a length line, then the agent's source. */
export function agentSource(): Buffer {
  const source = hostProgram('agent.py');
  return Buffer.concat([Buffer.from(`${source.length}\n`), source]);
}

/**
 * A shell command that runs a host-side Python program with the agent's own interpreter (NPURUN_PYTHON,
 * set by the agent for the commands it runs); the program's source and its arguments go on stdin.
 */
export function pythonOnHost(name: 'leftovers.py', args: unknown): { command: string; input: string } {
  const source = JSON.stringify(hostProgram(name).toString('utf8'));
  return {
    command: `exec "\${NPURUN_PYTHON:-python3}" -I -S -c 'import sys,json;exec(json.loads(sys.stdin.readline()))'`,
    input: `${source}\n${JSON.stringify(args)}\n`,
  };
}

/** The agent's stdlib-only bootstrap: a length line, then that many bytes of source, from stdin. */
const READ_SOURCE = 'import sys;b=sys.stdin.buffer;exec(b.read(int(b.readline())))';
const NEEDS_37 = 'npurun: the host agent needs Python 3.7 or later; python3 on PATH is ';
/**
 * Where a system interpreter is looked for first: on training hosts `python3` on PATH is often a pyenv
 * shim (a bash script that costs ~50 ms and queues on pyenv's shared rehash lock) or a conda wrapper.
 */
export const SYSTEM_PYTHONS = ['/usr/bin/python3', '/usr/local/bin/python3'];

/**
 * The command line a host runs, through the user's login shell once per host: a Python in isolated
 * mode (-I: PYTHONPATH and user site ignored, so a user's environment cannot break the agent) without
 * `site` (-S: no site-packages .pth files, which conda or a sandbox can make cost 20+ ms per start; the
 * agent needs only the standard library) that reads its source from stdin. Without `python`, the first
 * system interpreter of SYSTEM_PYTHONS runs it, or, when that is older than 3.7 (Ubuntu 18.04's 3.6),
 * `python3` from PATH; with none of them, `python3` from PATH. Ranks still get the full environment.
 */
export function agentCommand(python?: string): string {
  if (python !== undefined) return `exec ${python} -I -S -c '${READ_SOURCE}'`;
  const checked = `import sys\nif sys.version_info<(3,7):sys.exit(${JSON.stringify(NEEDS_37)}+sys.version.split()[0])\n${READ_SOURCE}`;
  const boot = `import sys,os\nif sys.version_info<(3,7):os.execvp("python3",["python3","-I","-S","-c",${JSON.stringify(checked)}])\n${READ_SOURCE}`;
  return `for p in ${SYSTEM_PYTHONS.join(' ')}; do [ -x "$p" ] && exec "$p" -I -S -c '${boot}'; done; exec python3 -I -S -c '${checked}'`;
}

interface Pending {
  resolve: (value: Record<string, unknown>) => void;
  reject: (err: Error) => void;
}

/** One rank's output streams as the launcher sees them; reading them acknowledges bytes to the agent. */
class RankStreams {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Bytes pushed while the consumer was full: acknowledged once it reads again. */
  private held = 0;
  endResolve!: (end: RankEnd) => void;
  readonly ended: Promise<RankEnd>;
  finished = false;

  constructor(private readonly ack: (bytes: number) => void) {
    const read = () => {
      if (this.held > 0) {
        const n = this.held;
        this.held = 0;
        this.ack(n);
      }
    };
    this.stdout = new Readable({ read });
    this.stderr = new Readable({ read });
    this.ended = new Promise((resolve) => (this.endResolve = resolve));
  }

  push(which: 'stdout' | 'stderr', data: Buffer): void {
    if (this.finished) return;
    const ok = this[which].push(data);
    if (ok) this.ack(data.length);
    else this.held += data.length;
  }

  end(end: RankEnd): void {
    if (this.finished) return;
    this.finished = true;
    this.stdout.push(null);
    this.stderr.push(null);
    this.endResolve(end);
  }
}

export interface AgentClientOptions {
  /** Host name, for messages. */
  name: string;
  /** Heartbeat period; the agent stops its ranks after `heartbeatTimeout` seconds without one. */
  heartbeatMs?: number;
}

export class AgentClient {
  private buffer: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private ranks: RankStreams[] = [];
  private acks = new Map<number, number>();
  private ackScheduled = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private hello: ((h: AgentHello) => void) | undefined;
  private closedReason: string | undefined;
  private readonly closedListeners: ((reason: string) => void)[] = [];
  private readonly stderrTail: string[] = [];

  constructor(
    private readonly input: Writable,
    output: Readable,
    private readonly opts: AgentClientOptions,
    stderr?: Readable,
  ) {
    input.on('error', () => {}); // a gone agent is reported through its output's end
    output.on('data', (chunk: Buffer) => this.onData(chunk));
    output.on('end', () => this.closed('the agent ended'));
    output.on('close', () => this.closed('the agent ended'));
    output.on('error', (err: Error) => this.closed(`the agent's output failed: ${err.message}`));
    stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail.push(chunk.toString('utf8'));
      if (this.stderrTail.length > 20) this.stderrTail.shift();
    });
  }

  /** Sends the program and waits for its hello (which says the interpreter works). */
  start(timeoutMs = 60_000, sourceSent = false): Promise<AgentHello> {
    if (!sourceSent) this.input.write(agentSource());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new NpurunError(
              'not-ready',
              `host ${this.opts.name}: the npurun agent did not start within ${timeoutMs / 1000} s`,
            ),
          ),
        timeoutMs,
      );
      timer.unref();
      this.hello = (h) => {
        clearTimeout(timer);
        resolve(h);
      };
      this.onClosed((reason) => {
        clearTimeout(timer);
        reject(new NpurunError('not-ready', `host ${this.opts.name}: the npurun agent did not start (${reason})`));
      });
    });
  }

  /** Last lines the agent's process wrote to stderr (a missing python3, a traceback). */
  get diagnostics(): string {
    return this.stderrTail.join('').trim().split('\n').slice(-5).join('\n');
  }

  onClosed(listener: (reason: string) => void): void {
    if (this.closedReason !== undefined) listener(this.closedReason);
    else this.closedListeners.push(listener);
  }

  get isClosed(): boolean {
    return this.closedReason !== undefined;
  }

  private closed(reason: string): void {
    if (this.closedReason !== undefined) return;
    const diag = this.diagnostics;
    this.closedReason = diag ? `${reason}: ${diag}` : reason;
    this.stopHeartbeat();
    for (const p of this.pending.values())
      p.reject(new NpurunError('unreachable', `host ${this.opts.name}: ${this.closedReason}`));
    this.pending.clear();
    for (const r of this.ranks) r.end({ code: null, signal: null, lost: true });
    for (const l of this.closedListeners) l(this.closedReason);
  }

  private send(kind: string, index: number, payload: Buffer): void {
    if (this.closedReason !== undefined || this.input.destroyed || this.input.writableEnded) return;
    const header = Buffer.alloc(HEADER_SIZE);
    header.write(kind, 0, 'latin1');
    header.writeUInt32BE(index, 1);
    header.writeUInt32BE(payload.length, 5);
    this.input.write(payload.length > 0 ? Buffer.concat([header, payload]) : header);
  }

  request(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    if (this.closedReason !== undefined)
      return Promise.reject(new NpurunError('unreachable', `host ${this.opts.name}: ${this.closedReason}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send('J', 0, Buffer.from(JSON.stringify({ ...fields, op, id })));
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let at = 0;
    while (this.buffer.length - at >= HEADER_SIZE) {
      const size = this.buffer.readUInt32BE(at + 5);
      if (this.buffer.length - at < HEADER_SIZE + size) break;
      const kind = String.fromCharCode(this.buffer[at] as number);
      const index = this.buffer.readUInt32BE(at + 1);
      const payload = this.buffer.subarray(at + HEADER_SIZE, at + HEADER_SIZE + size);
      at += HEADER_SIZE + size;
      if (kind === 'O' || kind === 'E') this.ranks[index]?.push(kind === 'O' ? 'stdout' : 'stderr', payload);
      else if (kind === 'J') this.onEvent(JSON.parse(payload.toString('utf8')) as Record<string, unknown>);
    }
    this.buffer = at === 0 ? this.buffer : this.buffer.subarray(at);
  }

  private onEvent(ev: Record<string, unknown>): void {
    switch (ev.ev) {
      case 'hello':
        this.hello?.(ev as unknown as AgentHello);
        this.hello = undefined;
        return;
      case 'reply': {
        const p = this.pending.get(ev.id as number);
        if (!p) return;
        this.pending.delete(ev.id as number);
        if (ev.ok) p.resolve(ev);
        else p.reject(new NpurunError('runtime', `host ${this.opts.name}: ${String(ev.error)}`));
        return;
      }
      case 'exit': {
        const r = this.ranks[ev.rank as number];
        r?.end({
          code: (ev.code as number | null) ?? null,
          signal: (ev.signal as string | null) ?? null,
          lost: false,
          ...(typeof ev.stopped_by === 'string' ? { stoppedBy: ev.stopped_by } : {}),
        });
        return;
      }
    }
  }

  private ack(index: number, bytes: number): void {
    this.acks.set(index, (this.acks.get(index) ?? 0) + bytes);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      for (const [i, n] of this.acks) {
        const payload = Buffer.alloc(4);
        payload.writeUInt32BE(n, 0);
        this.send('A', i, payload);
      }
      this.acks.clear();
    });
  }

  /** Runs `sh -c command` on the host (not a login shell: the agent already has the login environment). */
  async exec(command: string, input = ''): Promise<CommandResult> {
    const r = await this.request('sh', { command, input });
    return {
      stdout: r.stdout as string,
      stderr: r.stderr as string,
      code: (r.code as number | null) ?? null,
      signal: (r.signal as string | null) ?? null,
    };
  }

  async putFile(path: string, data: Buffer, mode = 0o644): Promise<void> {
    const r = await this.request('put', { path, data: data.toString('base64'), mode });
    const want = createHash('sha256').update(data).digest('hex');
    if (r.sha256 !== want)
      throw new NpurunError(
        'runtime',
        `host ${this.opts.name}: ${path} has SHA-256 ${String(r.sha256)} after copying, expected ${want}`,
      );
  }

  async listDir(dir: string): Promise<DirEntry[] | null> {
    const r = await this.request('list', { dir });
    const entries = r.entries as { name: string; size: number; mtime_ms: number; ino: number }[] | null;
    return entries === null
      ? null
      : entries.map((e) => ({ name: e.name, size: e.size, mtimeMs: e.mtime_ms, ino: e.ino }));
  }

  async removeFile(path: string): Promise<void> {
    await this.request('remove', { path });
  }

  /** Starts every rank of this host at once; heartbeats begin with them. */
  async startRanks(run: AgentRun, specs: RankLaunch[]): Promise<RankProcess[]> {
    const base = this.ranks.length;
    if (base !== 0) throw new Error('startRanks: one run per agent');
    this.ranks = specs.map((_, i) => new RankStreams((n) => this.ack(base + i, n)));
    this.startHeartbeat();
    const r = await this.request('start', {
      run: {
        run_id: run.runId,
        host: run.host,
        run_dir: run.runDir,
        heartbeat_timeout: run.heartbeatTimeout,
        orphan_grace: run.orphanGrace,
        window: run.window ?? 256 * 1024,
      },
      ranks: specs.map((s) => ({
        label: s.label,
        argv: s.argv,
        env: s.env,
        cwd: s.cwd,
        cpus: s.cpus,
        device: s.device,
      })),
    });
    const started = r.started as { rank: number; pid?: number; error?: string }[];
    return this.ranks.map((streams, i) => {
      const info = started.find((s) => s.rank === i);
      return {
        stdout: streams.stdout,
        stderr: streams.stderr,
        ended: streams.ended,
        ...(info?.pid !== undefined ? { pid: info.pid } : {}),
        ...(info?.error !== undefined ? { startError: info.error } : {}),
      };
    });
  }

  /** What each running rank is doing on the host; with `abort`, SIGABRT to each (Python prints its stacks). */
  async dumpStacks(abort: boolean): Promise<RankDump[]> {
    const r = await this.request('dump', { abort });
    return (r.ranks as { rank: number; wchan?: string; kstack?: string }[]).map((d) => ({
      index: d.rank,
      ...(d.wchan !== undefined ? { wchan: d.wchan } : {}),
      ...(d.kstack !== undefined ? { kernelStack: d.kstack } : {}),
    }));
  }

  async stopAll(graceSeconds: number, reason?: string): Promise<void> {
    await this.request('stop', { grace: graceSeconds, ...(reason ? { reason } : {}) }).catch(() => undefined);
  }

  async killAll(reason?: string): Promise<void> {
    await this.request('kill', reason ? { reason } : {}).catch(() => undefined);
  }

  private startHeartbeat(): void {
    const period = this.opts.heartbeatMs ?? 1000;
    this.heartbeat = setInterval(() => this.send('H', 0, Buffer.alloc(0)), period);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Asks the agent to clean up (leftovers, its files) and exit; then closes its input. */
  async bye(timeoutMs = 10_000): Promise<void> {
    this.stopHeartbeat();
    if (this.closedReason === undefined) {
      await Promise.race([
        this.request('bye').catch(() => undefined),
        new Promise((r) => setTimeout(r, timeoutMs).unref()),
      ]);
    }
    if (!this.input.destroyed && !this.input.writableEnded) this.input.end();
  }
}

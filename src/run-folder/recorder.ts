/**
 * RunRecorder: everything a run leaves behind in its run folder, and the live console.
 *
 *   const recorder = await RunRecorder.create({ runsDir, plan, argv, console: 'rank0', timestamps, color, out });
 *   proc.stdout.pipe(recorder.stream(label, 'stdout'));   // one Writable per rank and channel
 *   proc.stderr.pipe(recorder.stream(label, 'stderr'));   // pipe() gives backpressure
 *   recorder.event('preflight', { host, ok: true });      // events.jsonl (pino JSON lines)
 *   recorder.rankExited(label, outcome);                  // run.json rewritten at every rank exit
 *   recorder.lastLines(label, 20);                        // for the failure report
 *   await recorder.finish({ status, exitCode, rootCause, report });  // flush, close, final run.json
 *
 * Lines are whole everywhere (per-rank file, merged.log, console) whatever the chunking; see
 * line-splitter.ts for `\r`, `\r\n` and lines over 1 MiB, log-format.ts for the file formats.
 * A rank's Writable calls back only once the files (and the console) have taken its lines below
 * their high-water marks, so a fast rank is paused instead of filling memory.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { makeDirs } from '../make-dirs.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import pino from 'pino';
import { VERSION } from '../version.js';
import { NpurunError } from '../errors.js';
import type { HostSpec, RankSpec, RunPlan } from '../plan/types.js';
import type { RankOutcome, RunOutcome } from '../supervise/supervisor.js';
import { Collapser } from './collapse.js';
import { LineSplitter } from './line-splitter.js';
import { ConsolePrefixes, mergedPrefix, rankLogLine, wantsColor, type StreamName } from './log-format.js';
import { redactArgv, redactEnv, redactFields } from './redact.js';
import {
  EVENTS_FILE,
  MERGED_LOG_FILE,
  processStartTicks,
  rankLogPath,
  writeRankTableCopy,
  writeRunRecord,
  type AttemptRecord,
  type RankRecord,
  type RunRecord,
} from './record.js';

/** What the console shows live: rank 0, every rank, none, or these labels. Everything is saved regardless. */
export type ConsoleChoice = 'rank0' | 'all' | 'none' | 'collapse' | string[];

/** How a rank ended, as the supervisor judged it (its RankOutcome); written to run.json in snake_case. */
export type RankExit = Pick<RankOutcome, 'code' | 'signal' | 'cause' | 'message'> &
  Partial<Pick<RankOutcome, 'rootCause' | 'endedAt'>>;

/** How the run ended (from the supervisor's RunOutcome), as run.json records it. */
export interface RunResult {
  status: RunOutcome['status'];
  exitCode: number;
  /** Label of the root-cause rank. */
  rootCause?: string;
  /** The failure report shown to the user. */
  report?: string;
  /** For an interrupted run: who or what stopped it. */
  stoppedBy?: string;
}

export interface RunRecorderOptions {
  /** Parent of the run folder (default of the CLI: ./runs). */
  runsDir: string;
  plan: RunPlan;
  /** npurun's own command line, recorded with secret-looking KEY=VALUE arguments redacted. */
  argv: string[];
  /** Prefix per-rank log lines with their ISO time. */
  timestamps?: boolean;
  console: ConsoleChoice;
  /** Colour console prefixes; default: `out` is a terminal and NO_COLOR is unset. */
  color?: boolean;
  /** Console (default process.stdout). */
  out?: NodeJS.WritableStream;
  /**
   * Told once per problem when the run folder cannot be written (disk full, folder removed): the run
   * goes on, the ranks are not harmed, and the message says what is being lost. Default: stderr.
   */
  onProblem?: (message: string) => void;
  /** Sees every line a rank printed (hang detection watches for progress). */
  /** Every whole line of a rank (without its newline) and the time it reached npurun (ISO, as in merged.log). */
  onLine?: (label: string, line: Buffer, time: string) => void;
  /**
   * The same lines, a chunk's worth at a time (cheaper for consumers that can skip a whole chunk), with
   * the bytes that go to the rank's log for them (the lines, newlines and, with --timestamps, each
   * line's time: the lines' text with nothing else from npurun in it).
   */
  onLines?: (label: string, lines: Buffer[], time: string, bytes: Buffer) => void;
}

/** How many of a rank's last lines are kept in memory for the failure report, and how much of each. */
const LAST_LINES_KEPT = 200;
/** How long run.json may lag a rank's exit (one write for every exit within it). */
const RECORD_SAVE_DELAY_MS = 200;
const LAST_LINE_BYTES = 4096;
const NEWLINE = Buffer.from('\n');

/** "no space left on device" rather than ENOSPC: file errors in words. */
function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOSPC: 'no space left on device',
    ENOENT: 'the folder was removed',
    EACCES: 'permission denied',
    EROFS: 'read-only file system',
    EDQUOT: 'disk quota exceeded',
    EIO: 'input/output error',
  };
  return (code && words[code]) ?? (err instanceof Error ? err.message : String(err));
}

/** Per-channel buffer before pipe() pauses the rank's stream. */
const CHANNEL_HIGH_WATER_MARK = 64 * 1024;
const FILE_HIGH_WATER_MARK = 256 * 1024;

/** A file or the console, with one shared wait for 'drain' however many channels are waiting on it. */
class Destination {
  private drained: Promise<void> | undefined;
  private failure: Error | undefined;
  private readonly onError = (err: Error) => {
    if (this.failure) return;
    this.failure = err;
    this.onFailure?.(err);
  };

  constructor(
    readonly stream: NodeJS.WritableStream,
    private readonly onFailure?: (err: Error) => void,
  ) {
    stream.on('error', this.onError);
  }

  get error(): Error | undefined {
    return this.failure;
  }

  get bufferedBytes(): number {
    return (this.stream as { writableLength?: number }).writableLength ?? 0;
  }

  /** undefined when the caller may go on; otherwise a promise for the drain. */
  write(data: Buffer | string): Promise<void> | undefined {
    if (this.failure || data.length === 0) return undefined;
    if (this.stream.write(data)) return undefined;
    this.drained ??= new Promise<void>((resolve) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.stream.off('error', done);
        this.drained = undefined;
        resolve();
      };
      this.stream.on('drain', done);
      // A stream that fails or closes never drains: stop waiting (the error is recorded).
      this.stream.on('close', done);
      this.stream.on('error', done);
    });
    return this.drained;
  }

  detach(): void {
    this.stream.off('error', this.onError);
  }
}

/** The Writable one rank channel is piped into: cuts chunks into lines and hands them on. */
class RankChannel extends Writable {
  private readonly splitter = new LineSplitter();

  constructor(private readonly deliver: (lines: Buffer[]) => Promise<void> | undefined) {
    super({ highWaterMark: CHANNEL_HIGH_WATER_MARK });
  }

  get pendingBytes(): number {
    return this.splitter.bufferedBytes;
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.forward(this.splitter.push(chunk), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.forward(this.splitter.end(), callback);
  }

  private forward(lines: Buffer[], callback: (error?: Error | null) => void): void {
    const wait = lines.length > 0 ? this.deliver(lines) : undefined;
    if (wait) wait.then(() => callback(), callback);
    else callback();
  }
}

interface RankSlot {
  spec: RankSpec;
  file: Destination;
  mergedPrefix: Record<StreamName, Buffer>;
  consolePrefix: Buffer | undefined;
  lastLines: string[];
  channels: RankChannel[];
}

function consoleRanks(choice: ConsoleChoice, ranks: RankSpec[]): RankSpec[] {
  if (choice === 'none') return [];
  if (choice === 'all' || choice === 'collapse') return ranks;
  if (choice === 'rank0') return ranks.filter((r) => r.rank === 0);
  return ranks.filter((r) => choice.includes(r.label));
}

/** Hosts as recorded: the fields npurun plans with, copied one by one so nothing secret rides along. */
function recordedHost(h: HostSpec): HostSpec {
  const host: HostSpec = { name: h.name, address: h.address, local: h.local, devices: h.devices };
  if (h.slots !== undefined) host.slots = h.slots;
  if (h.slurm) host.slurm = { jobId: h.slurm.jobId, node: h.slurm.node };
  if (h.ssh) {
    const {
      hostname: sshHost,
      port,
      user,
      identityFiles,
      knownHostsFiles,
      strictHostKeyChecking,
      proxyJump,
      useAgent,
    } = h.ssh;
    host.ssh = {
      hostname: sshHost,
      port,
      user,
      identityFiles,
      knownHostsFiles,
      strictHostKeyChecking,
      useAgent,
      ...(proxyJump !== undefined ? { proxyJump } : {}),
    };
  }
  return host;
}

function recordedRank(r: RankSpec): RankRecord {
  return {
    label: r.label,
    rank: r.rank,
    local_rank: r.localRank,
    node_rank: r.nodeRank,
    role: r.role,
    host: r.host,
    address: r.address,
    device_id: r.deviceId,
    cpus: r.cpus,
    cwd: r.cwd,
    argv: redactArgv(r.argv),
    env: redactEnv(r.env),
    exit: null,
  };
}

function initialRecord(plan: RunPlan, argv: string[], timestamps: boolean): RunRecord {
  return {
    schema_version: 1,
    run_id: plan.runId,
    npurun_version: VERSION,
    argv: redactArgv(argv),
    cwd: process.cwd(),
    launcher_host: hostname(),
    launcher_pid: process.pid,
    launcher_start_ticks: processStartTicks(process.pid),
    started_at: new Date().toISOString(),
    ended_at: null,
    status: 'running',
    exit_code: null,
    root_cause: null,
    report: null,
    timestamps,
    remote_dir: plan.remoteDir,
    rank_table_path: plan.rankTablePath ?? null,
    world_size: plan.worldSize,
    master_addr: plan.masterAddr,
    master_port: plan.masterPort,
    inventory: plan.hosts.map(recordedHost),
    job: { ...plan.job, command: redactArgv(plan.job.command), env: redactEnv(plan.job.env) },
    ranks: plan.ranks.map(recordedRank),
  };
}

export class RunRecorder {
  /** `<runsDir>/<runId>` */
  readonly dir: string;
  private readonly record: RunRecord;
  private readonly slots = new Map<string, RankSlot>();
  private readonly merged: Destination;
  private readonly console: Destination | undefined;
  private readonly timestamps: boolean;
  private readonly eventsFile: ReturnType<typeof pino.destination>;
  private readonly events: pino.Logger;
  private done = false;
  private saveTimer: NodeJS.Timeout | undefined;
  private readonly problems = new Set<string>();
  private attempt = 1;
  private readonly onProblem: (message: string) => void;
  private readonly onLine: RunRecorderOptions['onLine'];
  private readonly onLines: RunRecorderOptions['onLines'];
  /** `--console collapse`: identical lines of several ranks shown once. */
  private readonly collapser: Collapser | undefined;
  private collapseTimer: NodeJS.Timeout | undefined;
  private readonly consoleChoice: ConsoleChoice;
  private readonly color: boolean;
  private readonly newFile: (path: string, what: string) => Destination;

  private constructor(dir: string, opts: RunRecorderOptions) {
    this.dir = dir;
    this.onProblem = opts.onProblem ?? ((m) => process.stderr.write(`npurun: ${m}\n`));
    this.onLine = opts.onLine;
    this.onLines = opts.onLines;
    if (opts.console === 'collapse') {
      const collapser = new Collapser();
      this.collapser = collapser;
      // Lines left pending by quiet ranks are shown once their window passes, without waiting for more output.
      this.collapseTimer = setInterval(() => {
        const due = collapser.due(Date.now());
        if (due.length > 0) void this.console?.write(due.join('\n') + '\n');
      }, 100);
      this.collapseTimer.unref();
    }
    this.timestamps = opts.timestamps ?? false;
    this.record = initialRecord(opts.plan, opts.argv, this.timestamps);
    writeRunRecord(dir, this.record);
    if (opts.plan.rankTable) writeRankTableCopy(dir, opts.plan.rankTable);

    this.eventsFile = pino.destination({ dest: join(dir, EVENTS_FILE), sync: true });
    this.events = pino(
      { base: { run_id: opts.plan.runId }, timestamp: pino.stdTimeFunctions.isoTime },
      this.eventsFile,
    );

    const out = opts.out ?? process.stdout;
    this.consoleChoice = opts.console;
    this.color = opts.color ?? wantsColor(out);
    const shown = consoleRanks(opts.console, opts.plan.ranks);
    this.console = shown.length > 0 ? new Destination(out) : undefined;
    this.newFile = (path: string, what: string) =>
      new Destination(createWriteStream(path, { highWaterMark: FILE_HIGH_WATER_MARK }), (err) =>
        this.problem(`cannot write ${path} (${describeFsError(err)}): ${what} is no longer saved; the run goes on`),
      );
    this.merged = this.newFile(join(dir, MERGED_LOG_FILE), 'the merged log');
    this.placeRanks(opts.plan.ranks);
    this.event('launch', {
      argv: this.record.argv,
      cwd: this.record.cwd,
      hosts: opts.plan.hosts.map((h) => h.name),
      world_size: opts.plan.worldSize,
      ranks: opts.plan.ranks.map((r) => ({ label: r.label, host: r.host, device: r.deviceId })),
    });
  }

  static async create(opts: RunRecorderOptions): Promise<RunRecorder> {
    const dir = join(opts.runsDir, opts.plan.runId);
    try {
      makeDirs(opts.runsDir);
      mkdirSync(dir);
      mkdirSync(join(dir, 'logs'));
    } catch (err) {
      const reason =
        (err as NodeJS.ErrnoException).code === 'EEXIST'
          ? 'already exists (run ids must be unique)'
          : (err as Error).message;
      throw new NpurunError('runtime', `cannot create run folder ${dir}: ${reason}`, { cause: err });
    }
    return new RunRecorder(dir, opts);
  }

  /** The Writable for one rank's stdout or stderr; the supervisor pipes the channel into it. */
  stream(rankLabel: string, which: StreamName): Writable {
    const slot = this.slot(rankLabel);
    const channel = new RankChannel((lines) => this.writeLines(slot, which, lines));
    // Written to after finish() (a lost host's stream that never ended): nothing more to save.
    channel.on('error', (err) => this.event('output-error', { label: rankLabel, stream: which, message: err.message }));
    slot.channels.push(channel);
    return channel;
  }

  /** Each rank's slot: its log file (opened once, kept across attempts) and its prefixes, which follow its host. */
  private placeRanks(ranks: RankSpec[]): void {
    const prefixes = new ConsolePrefixes(consoleRanks(this.consoleChoice, ranks), this.color);
    for (const spec of ranks) {
      const consolePrefix = prefixes.of(spec.label);
      const placed = {
        spec,
        mergedPrefix: {
          stdout: Buffer.from(mergedPrefix(spec, 'stdout')),
          stderr: Buffer.from(mergedPrefix(spec, 'stderr')),
        },
        consolePrefix: consolePrefix === undefined ? undefined : Buffer.from(consolePrefix),
      };
      const slot = this.slots.get(spec.label);
      if (slot) Object.assign(slot, placed);
      else
        this.slots.set(spec.label, {
          ...placed,
          file: this.newFile(rankLogPath(this.dir, spec.label), `rank ${spec.label}'s output`),
          lastLines: [],
          channels: [],
        });
    }
  }

  /**
   * The next attempt runs on other hosts (a spare in a lost host's place, or fewer of them): run.json's
   * hosts, ranks and world size, the rank table copy and the log prefixes follow the new plan. Ranks
   * no longer planned keep their log files.
   */
  replan(plan: RunPlan): void {
    this.placeRanks(plan.ranks);
    Object.assign(this.record, {
      inventory: plan.hosts.map(recordedHost),
      world_size: plan.worldSize,
      master_addr: plan.masterAddr,
      ranks: plan.ranks.map(recordedRank),
    });
    try {
      if (plan.rankTable) writeRankTableCopy(this.dir, plan.rankTable);
    } catch (err) {
      this.problem(`cannot write the new rank table into ${this.dir} (${describeFsError(err)}); the run goes on`);
    }
    this.saveRecord();
  }

  /** Starts attempt `n` of the job (1 at first; more with --max-restarts): events and run.json say which. */
  beginAttempt(
    n: number,
    resumedFrom: AttemptRecord['resumed_from'],
    hosts: Pick<AttemptRecord, 'world_size' | 'replaced' | 'dropped'> = {},
  ): void {
    this.attempt = n;
    if (n > 1) for (const r of this.record.ranks) r.exit = null;
    this.record.attempts = [
      ...(this.record.attempts ?? []),
      {
        attempt: n,
        started_at: new Date().toISOString(),
        ended_at: null,
        cause: null,
        root_cause: null,
        exit_code: null,
        resumed_from: resumedFrom,
        ...hosts,
      },
    ];
    this.event('attempt-start', { resumed_from: resumedFrom, ...hosts });
    this.saveRecord();
  }

  /** Ends the current attempt with how it went. */
  endAttempt(end: { cause: string; rootCause: string | null; exitCode: number }): void {
    const a = this.record.attempts?.at(-1);
    if (!a) return;
    Object.assign(a, {
      ended_at: new Date().toISOString(),
      cause: end.cause,
      root_cause: end.rootCause,
      exit_code: end.exitCode,
    });
    this.event('attempt-end', { cause: end.cause, root_cause: end.rootCause, exit_code: end.exitCode });
    this.saveRecord();
  }

  /** One structured line in events.jsonl (with its attempt); secret-looking fields are redacted. */
  event(kind: string, fields: Record<string, unknown> = {}): void {
    if (this.done) return;
    try {
      this.events.info({ ...(redactFields(fields) as Record<string, unknown>), event: kind, attempt: this.attempt });
    } catch (err) {
      this.problem(
        `cannot write ${join(this.dir, EVENTS_FILE)} (${describeFsError(err)}): events are no longer saved; the run goes on`,
      );
    }
  }

  /** Problems met while recording, each said once (also kept for the final report). */
  get recordingProblems(): string[] {
    return [...this.problems];
  }

  private problem(message: string): void {
    if (this.problems.has(message)) return;
    this.problems.add(message);
    this.onProblem(message);
  }

  /**
   * run.json after a rank's exit: written within RECORD_SAVE_DELAY_MS, once for every exit in that
   * window (rewriting the whole record per exit cost O(ranks^2): ~140 ms of CPU at 128 ranks).
   */
  private saveRecordSoon(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      if (!this.done) this.saveRecord();
    }, RECORD_SAVE_DELAY_MS);
    this.saveTimer.unref();
  }

  private saveRecord(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    try {
      writeRunRecord(this.dir, this.record);
    } catch (err) {
      this.problem(
        `cannot write ${join(this.dir, 'run.json')} (${describeFsError(err)}): the run record is not up to date; the run goes on`,
      );
    }
  }

  rankExited(rankLabel: string, exit: RankExit): void {
    const rank = this.record.ranks.find((r) => r.label === rankLabel);
    if (!rank) throw new Error(`RunRecorder: no rank "${rankLabel}" in run ${this.record.run_id}`);
    rank.exit = {
      code: exit.code,
      signal: exit.signal,
      cause: exit.cause,
      root_cause: exit.rootCause === true,
      ended_at: exit.endedAt ?? new Date().toISOString(),
      ...(exit.message !== undefined ? { message: exit.message } : {}),
    };
    if (exit.rootCause) this.record.root_cause = rankLabel;
    this.event('rank-exited', { label: rankLabel, host: rank.host, ...rank.exit });
    if (!this.done) this.saveRecordSoon();
  }

  /** The rank's last `n` lines (stdout and stderr, in arrival order, at most 200 kept). */
  lastLines(rankLabel: string, n: number): string[] {
    const lines = this.slot(rankLabel).lastLines;
    return n <= 0 ? [] : lines.slice(-n);
  }

  /** Bytes held in memory on their way to the files and the console (for tests and diagnostics). */
  bufferedBytes(): number {
    let total = this.merged.bufferedBytes + (this.console?.bufferedBytes ?? 0);
    for (const slot of this.slots.values()) {
      total += slot.file.bufferedBytes;
      for (const c of slot.channels) total += c.writableLength + c.pendingBytes;
      for (const l of slot.lastLines) total += l.length;
    }
    return total;
  }

  /** Ends every rank channel still open, flushes and closes the files, writes the final run.json. */
  async finish(result: RunResult): Promise<void> {
    if (this.done) return;
    const channels = [...this.slots.values()].flatMap((s) => s.channels);
    for (const c of channels) if (!c.writableEnded) c.end();
    await Promise.all(channels.map((c) => finished(c).catch(() => undefined)));
    if (this.collapser) {
      clearInterval(this.collapseTimer);
      const rest = this.collapser.flush();
      if (rest.length > 0) void this.console?.write(rest.join('\n') + '\n');
    }
    const files = [this.merged, ...[...this.slots.values()].map((s) => s.file)];
    for (const f of files) f.stream.end();
    await Promise.all(files.map((f) => finished(f.stream as Writable).catch(() => undefined)));
    this.console?.detach();
    const failed = files.filter((f) => f.error).map((f) => f.error?.message);
    if (failed.length > 0) this.event('log-write-failed', { errors: failed });
    this.event('finish', { status: result.status, exit_code: result.exitCode, root_cause: result.rootCause ?? null });
    this.done = true;
    try {
      this.eventsFile.end();
    } catch {
      // already reported as a problem
    }
    Object.assign(this.record, {
      status: result.status,
      exit_code: result.exitCode,
      root_cause: result.rootCause ?? this.record.root_cause,
      report: result.report ?? null,
      ended_at: new Date().toISOString(),
      ...(result.stoppedBy ? { stopped_by: result.stoppedBy } : {}),
    });
    this.saveRecord();
  }

  private slot(label: string): RankSlot {
    const slot = this.slots.get(label);
    if (!slot) throw new Error(`RunRecorder: no rank "${label}" in run ${this.record.run_id}`);
    return slot;
  }

  /** One chunk's whole lines to every place they go, as bytes; resolves when all of them can take more. */
  private writeLines(slot: RankSlot, which: StreamName, lines: Buffer[]): Promise<void> | undefined {
    const time = new Date().toISOString();
    const rankPrefix = Buffer.from(rankLogLine('', which, this.timestamps ? time : undefined).slice(0, -1));
    const merged = Buffer.concat([Buffer.from(`${time} `), slot.mergedPrefix[which]]);
    const rankParts: Buffer[] = [];
    const mergedParts: Buffer[] = [];
    const consoleParts: Buffer[] = [];
    for (const line of lines) {
      this.onLine?.(slot.spec.label, line, time);
      if (rankPrefix.length > 0) rankParts.push(rankPrefix);
      rankParts.push(line, NEWLINE);
      mergedParts.push(merged, line, NEWLINE);
      if (this.collapser) {
        for (const folded of this.collapser.push(
          slot.spec.rank >= 0 ? slot.spec.rank : slot.spec.label,
          line.toString('utf8'),
          Date.now(),
        ))
          consoleParts.push(Buffer.from(folded + '\n'));
      } else if (slot.consolePrefix !== undefined) consoleParts.push(slot.consolePrefix, line, NEWLINE);
    }
    // Kept for the failure report: the last lines, each cut to a few KiB, so memory stays bounded
    // whatever a rank prints.
    for (const line of lines.slice(-LAST_LINES_KEPT))
      slot.lastLines.push(line.subarray(0, LAST_LINE_BYTES).toString('utf8'));
    if (slot.lastLines.length > 2 * LAST_LINES_KEPT) slot.lastLines.splice(0, slot.lastLines.length - LAST_LINES_KEPT);
    const rankBytes = Buffer.concat(rankParts);
    this.onLines?.(slot.spec.label, lines, time, rankBytes);
    const waits = [
      slot.file.write(rankBytes),
      this.merged.write(Buffer.concat(mergedParts)),
      this.console?.write(Buffer.concat(consoleParts)),
    ].filter((w) => w !== undefined);
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => undefined);
  }
}

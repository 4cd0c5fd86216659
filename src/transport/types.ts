import type { Readable } from 'node:stream';
import type { HostSpec } from '../inventory/types.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: string | null;
}

export interface DirEntry {
  name: string;
  size: number;
  mtimeMs: number;
  /** Inode number, where the host reports it (tells a replaced file from the same name). */
  ino?: number;
}

/** How a rank's main process ended, as its host's agent reported it. */
export interface RankEnd {
  code: number | null;
  /** "SIGTERM", "SIGKILL", ... when the rank died of a signal. */
  signal: string | null;
  /** The host's agent or connection was lost before the rank reported its end. */
  lost: boolean;
  /** The agent stopped the rank, and why (the launcher asked, input closed, no heartbeat...). */
  stoppedBy?: string;
}

/** What a host's agent says of itself when it starts. */
export interface AgentHello {
  pid: number;
  /** Its interpreter (sys.executable: shims and wrappers resolved). */
  python: string;
  version: string;
  uid: number;
  user: string;
  home: string;
  /** Whether it could become the child subreaper of its ranks' descendants. */
  subreaper: boolean;
}

/** What the agent needs to know about the run to start a host's ranks. */
export interface AgentRun {
  runId: string;
  host: string;
  /** Private per-run directory on the host (pid files); created 0700, owner checked. */
  runDir: string;
  /** Seconds without a heartbeat before the agent stops its ranks (0 = never). */
  heartbeatTimeout: number;
  /** Seconds between SIGTERM and SIGKILL when the agent stops ranks on its own. */
  orphanGrace: number;
  /** Unacknowledged output bytes per rank before the agent pauses reading it. */
  window?: number;
}

/** One rank to start: argv and env reach it byte for byte (they travel as JSON, never through a shell). */
export interface RankLaunch {
  label: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  cpus: number[];
  /** The NPU it runs on (recorded in its pid file, so another launch sees the device is taken). */
  device: number | null;
}

/** One rank running under its host's agent. */
export interface RankProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the rank has ended and all its output has been delivered to the streams. */
  readonly ended: Promise<RankEnd>;
  readonly pid?: number;
  /** Set when the rank could not be started (exec failed); `ended` then resolves with code 127. */
  readonly startError?: string;
}

/** What a rank was doing when asked (a hang): its index among the host's ranks, kernel wait channel and stack. */
export interface RankDump {
  index: number;
  wchan?: string;
  kernelStack?: string;
}

/** A host npurun works on through one agent: the local machine (a pipe) or a remote one (one SSH channel). */
export interface HostTransport {
  readonly host: HostSpec;
  /** What the host's agent said of itself: its interpreter, uid, user. */
  readonly hello: AgentHello;
  /** Runs `sh -c command` on the host through its agent, feeding `input` on stdin. */
  exec(command: string, input?: string): Promise<CommandResult>;
  /** Starts all of this host's ranks of a run. */
  startRanks(run: AgentRun, ranks: RankLaunch[]): Promise<RankProcess[]>;
  /** SIGTERM to every rank (and what it left), SIGKILL after `graceSeconds`. */
  stopAll(graceSeconds: number, reason?: string): Promise<void>;
  /** What every running rank is doing; with `abort`, SIGABRT to each so Python ranks print their stacks. */
  dumpStacks(abort: boolean): Promise<RankDump[]>;
  /** SIGKILL to every rank now. */
  killAll(reason?: string): Promise<void>;
  /** Writes a file (creating a private directory), then checks its SHA-256 on the host. */
  putFile(path: string, data: Buffer, mode?: number): Promise<void>;
  /** Files directly in `dir` (size, mtime, inode), or null when the directory does not exist. */
  listDir(dir: string): Promise<DirEntry[] | null>;
  /** Removes one file; a file already gone is not an error. */
  removeFile(path: string): Promise<void>;
  /** Called once if the host (its connection or its agent) is lost while in use. */
  onLost(listener: (reason: string) => void): void;
  /** Lets the agent clean up and exit, then closes the connection. */
  close(): Promise<void>;
}

/** Runs a POSIX sh script on the host (the script goes on stdin, never on the command line). */
export function runScript(transport: HostTransport, script: string): Promise<CommandResult> {
  return transport.exec('sh -s', script);
}

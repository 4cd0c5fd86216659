import type { Readable } from 'node:stream';
import type { HostSpec } from '../plan/types.js';
import type { GuardSpec } from './guard.js';

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
}

/** How a rank ended, as far as the launcher can tell. */
export interface RankEnd {
  code: number | null;
  /** "SIGTERM", "SIGKILL", ... when the rank died of a signal. */
  signal: string | null;
  /** The host's connection was lost before the rank reported its end. */
  lost: boolean;
}

/** One rank running under its guard on some host. */
export interface RankProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the rank has ended and both output streams are finished. */
  readonly ended: Promise<RankEnd>;
  /** SIGTERM to the rank's process group, SIGKILL after `graceSeconds`. */
  stop(graceSeconds: number): void;
  /** SIGKILL to the rank's process group now. */
  kill(): void;
}

/** A host npurun can run things on: the local machine (execa) or a remote one (ssh2). */
export interface HostTransport {
  readonly host: HostSpec;
  /** Runs `command` with the login shell (remote) or sh (local), feeding `input` on stdin. */
  exec(command: string, input?: string): Promise<CommandResult>;
  /** Starts a rank under the guard. */
  startRank(spec: GuardSpec): Promise<RankProcess>;
  /** Writes a file (creating its directory), then checks its SHA-256 on the host. */
  putFile(path: string, data: Buffer, mode?: number): Promise<void>;
  /** Files directly in `dir` (size, mtime), or null when the directory does not exist. */
  listDir(dir: string): Promise<DirEntry[] | null>;
  /** Removes one file; a file already gone is not an error. */
  removeFile(path: string): Promise<void>;
  /** Called once if the host becomes unreachable while connected. */
  onLost(listener: (reason: string) => void): void;
  close(): Promise<void>;
}

/** Runs a POSIX sh script on the host (the script goes on stdin, never on the command line). */
export function runScript(transport: HostTransport, script: string): Promise<CommandResult> {
  return transport.exec('sh -s', script);
}

import { pythonOnHost } from '../transport/agent-client.js';
import type { HostTransport } from '../transport/types.js';

/**
 * Finding and stopping what a run left on a host, by the pid files its agent wrote (src/agent/leftovers.py):
 * never by a process-name pattern, and only from files and directories the user owns.
 */
export interface LeftoverRank {
  runId: string;
  label: string;
  pid: number;
  alive: boolean;
  members: { pid: number; cmdline: string }[];
  killed?: boolean;
}

/** The glob of pid files for runs under a remote-dir template such as "/tmp/npurun-{uid}/{run_id}" ({uid} is expanded on the host). */
export function pidFileGlob(remoteDirTemplate: string, runId?: string): string {
  return `${remoteDirTemplate.replace(/\{run_id\}/g, runId ?? '*')}/pids/*.json`;
}

async function runLeftovers(t: HostTransport, args: Record<string, unknown>): Promise<LeftoverRank[]> {
  const { command, input } = pythonOnHost('leftovers.py', args);
  const r = await t.exec(command, input);
  if (r.code !== 0) throw new Error(`${t.host.name}: cannot read pid files: ${r.stderr.trim() || `exit ${r.code}`}`);
  const raw = JSON.parse(r.stdout) as {
    run_id: string;
    label: string;
    pid: number;
    alive: boolean;
    members: { pid: number; cmdline: string }[];
    killed?: boolean;
  }[];
  return raw.map((x) => ({
    runId: x.run_id,
    label: x.label,
    pid: x.pid,
    alive: x.alive,
    members: x.members,
    ...(x.killed !== undefined ? { killed: x.killed } : {}),
  }));
}

export function listLeftovers(t: HostTransport, remoteDirTemplate: string, runId?: string): Promise<LeftoverRank[]> {
  return runLeftovers(t, { pattern: pidFileGlob(remoteDirTemplate, runId), run_id: runId ?? null });
}

export function killLeftovers(
  t: HostTransport,
  remoteDirTemplate: string,
  runId: string,
  graceSeconds: number,
): Promise<LeftoverRank[]> {
  return runLeftovers(t, {
    pattern: pidFileGlob(remoteDirTemplate, runId),
    run_id: runId,
    kill: true,
    grace: graceSeconds,
  });
}

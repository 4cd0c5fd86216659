import { spawn, type ChildProcess } from 'node:child_process';
import { NpurunError } from '../errors.js';
import type { HostSpec } from '../inventory/types.js';
import { AgentClient, agentCommand, agentSource } from './agent-client.js';
import { AgentTransport } from './agent-transport.js';

/**
 * The local agent's process, with its source already on its stdin. node:child_process, not execa: this
 * is every local launch's start, and importing execa costs ~70 ms (a hundred modules).
 * Detached: a Ctrl-C on the terminal reaches npurun, which stops the ranks with the grace period,
 * instead of hitting the agent and the ranks directly.
 */
function spawnAgent(): ChildProcess {
  const child = spawn('sh', ['-c', agentCommand(process.env.NPURUN_PYTHON || undefined)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  // A spawn that fails closes the pipes: the agent's start reports it with its reason.
  child.on('error', () => undefined);
  child.stdin?.on('error', () => undefined);
  child.stdin?.write(agentSource());
  return child;
}

let early: ChildProcess | undefined;

/** Whether the agent's process and pipes keep npurun's event loop alive (they are sockets at run time). */
function holdOpen(child: ChildProcess, hold: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as ({ ref?(): void; unref?(): void } | null)[])
    if (hold) handle?.ref?.();
    else handle?.unref?.();
}

/**
 * Starts the local agent ahead of time, while npurun still loads its modules and reads its files (the
 * Python start, ~30 ms, then overlaps them), for a command that will most likely run ranks here. If it
 * is not used, it holds nothing: it does not keep npurun alive, and it exits when npurun does (its
 * input closes).
 */
export function startLocalAgentEarly(): void {
  if (early) return;
  early = spawnAgent();
  holdOpen(early, false);
}

/**
 * Runs a shell script (on stdin) on this machine: the local probe of `devices` and `ranktable generate`,
 * which need no agent. Never rejects: a shell that cannot start is a result with its reason in stderr.
 */
export function localShellRunner(script: string): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-s'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => resolve({ stdout, stderr: stderr + err.message, code: null }));
    child.on('close', (code) => resolve({ stdout, stderr, code }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(script);
  });
}

/** The launching machine itself: the same agent as on remote hosts, through a pipe. */
export class LocalTransport extends AgentTransport {
  static async connect(host: HostSpec): Promise<LocalTransport> {
    const child = early ?? spawnAgent();
    if (early) {
      early = undefined;
      holdOpen(child, true); // in use now: npurun waits for it as for any agent
    }
    const { stdin, stdout, stderr } = child;
    if (!stdin || !stdout || !stderr) throw new NpurunError('runtime', `local: cannot open pipes to the npurun agent`);
    const agent = new AgentClient(stdin, stdout, { name: host.name }, stderr);
    const hello = await agent.start(undefined, true);
    return new LocalTransport(host, agent, hello);
  }
}

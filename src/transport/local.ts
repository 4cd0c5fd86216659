import { spawn } from 'node:child_process';
import { NpurunError } from '../errors.js';
import type { HostSpec } from '../inventory/types.js';
import { AgentClient, agentCommand } from './agent-client.js';
import { AgentTransport } from './agent-transport.js';

/** The launching machine itself: the same agent as on remote hosts, through a pipe. */
export class LocalTransport extends AgentTransport {
  static async connect(host: HostSpec): Promise<LocalTransport> {
    // node:child_process, not execa: this is every local launch's start, and importing execa costs
    // ~70 ms (a hundred modules), as much as the rest of the launch.
    // Detached: a Ctrl-C on the terminal reaches npurun, which stops the ranks with the grace period,
    // instead of hitting the agent and the ranks directly.
    const child = spawn('sh', ['-c', agentCommand(process.env.NPURUN_PYTHON || undefined)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    // A spawn that fails closes the pipes: the agent's start reports it with its reason.
    child.on('error', () => undefined);
    const { stdin, stdout, stderr } = child;
    if (!stdin || !stdout || !stderr) throw new NpurunError('runtime', `local: cannot open pipes to the npurun agent`);
    const agent = new AgentClient(stdin, stdout, { name: host.name }, stderr);
    const hello = await agent.start();
    return new LocalTransport(host, agent, hello);
  }
}

import { execa } from 'execa';
import { NpurunError } from '../errors.js';
import type { HostSpec } from '../inventory/types.js';
import { AgentClient, agentCommand } from './agent-client.js';
import { AgentTransport } from './agent-transport.js';

/** The launching machine itself: the same agent as on remote hosts, through a pipe. */
export class LocalTransport extends AgentTransport {
  static async connect(host: HostSpec): Promise<LocalTransport> {
    // Detached: a Ctrl-C on the terminal reaches npurun, which stops the ranks with the grace period,
    // instead of hitting the agent and the ranks directly.
    const child = execa('sh', ['-c', agentCommand(process.env.NPURUN_PYTHON || undefined)], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      detached: true,
      cleanup: false,
    });
    const { stdin, stdout, stderr } = child;
    if (!stdin || !stdout || !stderr) throw new NpurunError('runtime', `local: cannot open pipes to the npurun agent`);
    const agent = new AgentClient(stdin, stdout, { name: host.name }, stderr);
    child.catch(() => undefined);
    const hello = await agent.start();
    return new LocalTransport(host, agent, hello);
  }
}

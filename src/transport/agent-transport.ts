import type { HostSpec } from '../inventory/types.js';
import type { AgentClient, AgentHello } from './agent-client.js';
import type { AgentRun, CommandResult, DirEntry, HostTransport, RankDump, RankLaunch, RankProcess } from './types.js';

/** Wraps an agent as a HostTransport; the local pipe and the SSH channel differ only in how they connect. */
export class AgentTransport implements HostTransport {
  private closing = false;
  private readonly lostListeners: ((reason: string) => void)[] = [];

  constructor(
    readonly host: HostSpec,
    protected readonly agent: AgentClient,
    readonly hello: AgentHello,
  ) {
    agent.onClosed((reason) => this.lost(`the npurun agent on ${host.name} is gone (${reason})`));
  }

  protected lost(reason: string): void {
    if (this.closing) return;
    this.closing = true;
    for (const l of this.lostListeners) l(reason);
  }

  onLost(listener: (reason: string) => void): void {
    this.lostListeners.push(listener);
  }

  exec(command: string, input = ''): Promise<CommandResult> {
    return this.agent.exec(command, input);
  }

  startRanks(run: AgentRun, ranks: RankLaunch[]): Promise<RankProcess[]> {
    return this.agent.startRanks(run, ranks);
  }

  stopAll(graceSeconds: number, reason?: string): Promise<void> {
    return this.agent.stopAll(graceSeconds, reason);
  }

  dumpStacks(abort: boolean): Promise<RankDump[]> {
    return this.agent.dumpStacks(abort);
  }

  killAll(reason?: string): Promise<void> {
    return this.agent.killAll(reason);
  }

  putFile(path: string, data: Buffer, mode?: number): Promise<void> {
    return this.agent.putFile(path, data, mode);
  }

  listDir(dir: string): Promise<DirEntry[] | null> {
    return this.agent.listDir(dir);
  }

  removeFile(path: string): Promise<void> {
    return this.agent.removeFile(path);
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.agent.bye();
  }
}

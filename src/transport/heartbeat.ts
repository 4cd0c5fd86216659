import type { Writable } from 'node:stream';

/** Sends control lines to one guard; silently drops them once its input is closed. */
export interface GuardControl {
  send(line: string): void;
}

export function guardControl(stdin: Writable): GuardControl {
  return {
    send(line: string) {
      if (!stdin.destroyed && stdin.writable && !stdin.writableEnded) stdin.write(line + '\n');
    },
  };
}

/**
 * One timer for all guards of a host: every second each guard gets an "H" line. A guard that hears
 * nothing for its heartbeat timeout stops its rank, which is how a cut network still leaves no
 * process behind even though sshd itself would not notice the dead connection for hours.
 */
export class Heartbeat {
  private readonly guards = new Set<GuardControl>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly intervalMs = 1000) {}

  add(guard: GuardControl): void {
    this.guards.add(guard);
    if (!this.timer) {
      this.timer = setInterval(() => {
        for (const g of this.guards) g.send('H');
      }, this.intervalMs);
      this.timer.unref();
    }
  }

  remove(guard: GuardControl): void {
    this.guards.delete(guard);
    if (this.guards.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

import type { RunPlan } from '../plan/types.js';
import type { RunRecorder } from '../run-folder/recorder.js';
import {
  describeFrames,
  hangCulprits,
  HangWatch,
  pythonFrames,
  type Frame,
  type HangFinding,
} from '../supervise/hang.js';
import type { RunControl } from '../supervise/supervisor.js';
import type { HostTransport } from '../transport/types.js';

/** How long ranks get to print their stacks after SIGABRT before the run is stopped. */
const DUMP_WAIT_MS = 3000;

/**
 * Watches a run for a hang (`--hang-timeout`): when no rank made progress for the timeout, it marks
 * the run as stopping, asks every host's agent what its ranks are doing and sends them SIGABRT (Python
 * ranks, with PYTHONFAULTHANDLER=1 from the plan, print every thread's stack), waits for the stacks,
 * blames the rank that stopped first or whose stack is the odd one out, then stops the run. The report
 * (also in events.jsonl) lists each rank's last progress and top frames side by side.
 */
export class HangDetector {
  private readonly watch: HangWatch;
  private timer: NodeJS.Timeout | undefined;
  private control: RunControl | undefined;
  private handling = false;
  /** The report, once a hang was found. */
  report: string | undefined;

  constructor(
    private readonly plan: RunPlan,
    private readonly transports: Map<string, HostTransport>,
    private readonly recorder: Pick<RunRecorder, 'lastLines' | 'event'>,
    private readonly say: (line: string) => void,
  ) {
    const labels = plan.ranks.filter((r) => r.role === 'rank').map((r) => r.label);
    this.watch = new HangWatch(
      labels,
      (plan.job.hangTimeoutSeconds as number) * 1000,
      plan.job.progressPattern,
      Date.now(),
    );
  }

  line(label: string, line: Buffer): void {
    // Progress lines are short; a long line is cut before the pattern sees it.
    this.watch.line(label, line.subarray(0, 4096).toString('utf8'), Date.now());
  }

  ended(label: string): void {
    this.watch.ended(label);
  }

  start(control: RunControl): void {
    this.control = control;
    this.timer = setInterval(() => {
      const finding = this.watch.check(Date.now());
      if (finding && !this.handling) void this.handle(finding);
    }, 500);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private handle(finding: HangFinding): Promise<void> {
    this.handling = true;
    this.stop();
    const work = this.collect(finding);
    this.control?.until(work);
    return work;
  }

  private async collect(finding: HangFinding): Promise<void> {
    const ctl = this.control as RunControl;
    const seconds = (finding.silentMs / 1000).toFixed(1);
    ctl.hold(`hang: no rank made progress for ${seconds} s`);
    this.say(`npurun: hang: no rank made progress for ${seconds} s; collecting every rank's stack`);
    const kernel = new Map<string, string>();
    await Promise.all(
      [...this.transports].map(async ([host, t]) => {
        const ranks = this.plan.ranks.filter((r) => r.host === host);
        const dumps = await t.dumpStacks(true).catch(() => []);
        for (const d of dumps) {
          const label = ranks[d.index]?.label;
          if (label !== undefined && d.wchan) kernel.set(label, d.wchan.trim());
        }
      }),
    );
    const end = Date.now() + DUMP_WAIT_MS;
    while (Date.now() < end && ctl.running().length > 0) await new Promise((r) => setTimeout(r, 100));
    const frames = new Map<string, Frame[]>();
    for (const { label } of finding.order) frames.set(label, pythonFrames(this.recorder.lastLines(label, 200)));
    const culprits = hangCulprits(finding, frames);
    this.report = this.describe(finding, frames, kernel, culprits);
    this.recorder.event('hang', {
      silent_ms: finding.silentMs,
      culprits: culprits.labels,
      why: culprits.why,
      ranks: finding.order.map((o) => ({
        label: o.label,
        last_progress: new Date(o.at).toISOString(),
        frames: frames.get(o.label) ?? [],
        wchan: kernel.get(o.label) ?? null,
      })),
    });
    ctl.blameHang(culprits.labels, culprits.why);
    ctl.stop(`hang: no rank made progress for ${seconds} s`);
  }

  private describe(
    finding: HangFinding,
    frames: Map<string, Frame[]>,
    kernel: Map<string, string>,
    culprits: { labels: string[]; why: string },
  ): string {
    const spec = (label: string) => this.plan.ranks.find((r) => r.label === label);
    const who = culprits.labels
      .map(
        (l) => `rank ${l} (host ${spec(l)?.host}${spec(l)?.deviceId !== null ? `, device ${spec(l)?.deviceId}` : ''})`,
      )
      .join(', ');
    const width = Math.max(...finding.order.map((o) => o.label.length));
    const rows = finding.order.map((o) => {
      const mark = culprits.labels.includes(o.label) ? '*' : ' ';
      const f = frames.get(o.label) ?? [];
      const where =
        f.length > 0
          ? describeFrames(f)
          : kernel.has(o.label)
            ? `(no Python stack; kernel: ${kernel.get(o.label)})`
            : '(no stack)';
      return `${mark} rank ${o.label.padEnd(width)}  last progress ${new Date(o.at).toISOString().slice(11, 23)}  ${where}`;
    });
    return [
      `npurun: hang: ${who} ${culprits.why}`,
      '--- each rank: last progress, top frames (innermost first) ---',
      ...rows,
      '---',
    ].join('\n');
  }
}

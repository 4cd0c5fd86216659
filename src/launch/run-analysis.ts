import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { RunPlan } from '../plan/types.js';
import { METRICS_FILE, metricsFileRow } from '../report/metrics-file.js';
import { emptyRankMetrics, foldMetric, readMetricLine, type RankMetrics } from '../summary/metrics.js';
import {
  judgeStragglers,
  noteStepTime,
  progressRegExp,
  type RankTimes,
  type Straggler,
} from '../summary/stragglers.js';
import { summarize, type RunSummary } from '../summary/summary.js';

const CR = 13;
/**
 * Every word a line must hold for any parser below to read it, in any case: the metric lines', the
 * step-time lines' and the default progress pattern's. ASCII only, so a chunk decoded as latin1 (cheap)
 * is tested exactly as its UTF-8 lines would be.
 */
const WORDS = /epoch|iter|step|npurun|before results|allreduce|inference performance/i;

/**
 * What the launcher learns from the ranks' lines as they arrive: the summary's per-rank metrics, the
 * step times stragglers are judged on, and metrics.jsonl, written as it goes. The same parsers as
 * `npurun summary` and the report, which read merged.log afterwards, give the same results (line
 * numbers are the line's number in the rank's own log); the launcher no longer reads back what it
 * wrote (three passes over merged.log: seconds for a chatty run, minutes for a multi-day one).
 */
export class RunAnalysis {
  private readonly metrics = new Map<string, RankMetrics>();
  private readonly lineNo = new Map<string, number>();
  private readonly times = new Map<string, RankTimes>();
  private readonly where = new Map<string, { host: string; device: number | null }>();
  private readonly progress: RegExp;
  private readonly customProgress: boolean;
  private readonly datasetSize: number | undefined;
  private out: WriteStream | undefined;
  private writeError: Error | undefined;

  constructor(plan: RunPlan) {
    this.replanned(plan);
    for (const r of plan.ranks) if (r.role !== 'scheduler') this.metrics.set(r.label, emptyRankMetrics(r.label));
    this.progress = progressRegExp(plan.job.progressPattern);
    this.customProgress = plan.job.progressPattern !== undefined;
    this.datasetSize = plan.job.evalDatasetSize;
  }

  /**
   * A chunk of a rank's whole lines (`bytes`: all of them in one buffer, with anything else in it that
   * holds none of WORDS). With the default progress pattern, a chunk holding none of WORDS
   * is only counted: a rank flooding its log with other lines costs one scan per chunk, not six regular
   * expressions per line.
   */
  lines(label: string, lines: Buffer[], time: string, bytes: Buffer = Buffer.concat(lines)): void {
    if (!this.customProgress && !WORDS.test(bytes.toString('latin1'))) {
      if (this.where.has(label)) this.lineNo.set(label, (this.lineNo.get(label) ?? 0) + lines.length);
      return;
    }
    for (const line of lines) this.line(label, line, time);
  }

  /** One whole line of a rank (bytes, without its newline) and the time it reached npurun (ISO). */
  line(label: string, bytes: Buffer, time: string): void {
    const where = this.where.get(label);
    if (!where) return;
    // merged.log's readers end a line at a carriage return too: what follows one is not this line.
    const cr = bytes.indexOf(CR);
    const text = (cr >= 0 ? bytes.subarray(0, cr) : bytes).toString('utf8');
    const n = (this.lineNo.get(label) ?? 0) + 1;
    this.lineNo.set(label, n);
    let t = this.times.get(label);
    if (!t) this.times.set(label, (t = { host: where.host, device: where.device, said: [], progress: [] }));
    noteStepTime(t, text, time, this.progress);
    const ev = readMetricLine(text);
    if (!ev) return;
    const acc = this.metrics.get(label);
    if (acc) foldMetric(acc, ev, n);
    const row = metricsFileRow({ time, rank: label, host: where.host, device: where.device, line: n, event: ev });
    if (row && !this.writeError) this.out?.write(JSON.stringify(row) + '\n');
  }

  /** Opens the run folder's metrics.jsonl (before the ranks start). */
  open(runDir: string): void {
    this.out = createWriteStream(join(runDir, METRICS_FILE));
    this.out.on('error', (err) => (this.writeError ??= err));
  }

  /** A restart's plan: a rank may now run on another host (a spare). */
  replanned(plan: RunPlan): void {
    for (const r of plan.ranks) {
      this.where.set(r.label, { host: r.host, device: r.deviceId ?? null });
      Object.assign(this.times.get(r.label) ?? {}, { host: r.host, device: r.deviceId ?? null });
    }
  }

  summary(): RunSummary {
    return summarize(
      [...this.metrics.values()],
      this.datasetSize !== undefined ? { datasetSize: this.datasetSize } : {},
    );
  }

  stragglers(): Straggler[] {
    return judgeStragglers(this.times);
  }

  /** Each rank's step times so far: the live straggler watch judges them while the run goes. */
  get stepTimes(): ReadonlyMap<string, RankTimes> {
    return this.times;
  }

  /** Closes metrics.jsonl; rejects with the first write error (a full disk), once the file is closed. */
  async close(): Promise<void> {
    if (!this.out) return;
    this.out.end();
    await finished(this.out).catch((err: Error) => (this.writeError ??= err));
    if (this.writeError) throw this.writeError;
  }
}

import { join } from 'node:path';
import { parseMergedLine } from '../run-folder/log-format.js';
import { FileTail } from '../run-folder/log-reader.js';
import { MERGED_LOG_FILE } from '../run-folder/record.js';
import { readMetricLine, type BadMetric, type MetricEvent } from '../summary/metrics.js';

/**
 * Every metric a run's ranks printed, with who printed it and when: read from merged.log with the
 * summary's own line parsers, incrementally (a live run's file grows; each refresh reads only what
 * is new), plus the last lines of every rank for the report's rank cells.
 */

export interface MetricRow {
  /** ISO time the line reached npurun. */
  time: string;
  rank: string;
  host: string;
  device: number | null;
  /** The line's number in the rank's own log (what summary warnings cite). */
  line: number;
  /** An unusable structured metric line is kept (the summary warns about it); metrics.jsonl skips it. */
  event: MetricEvent | BadMetric;
}

/** How many of a rank's last lines the report shows. */
export const LAST_LINES = 20;

export class RunSeriesReader {
  readonly rows: MetricRow[] = [];
  readonly lastLines = new Map<string, string[]>();
  /** Lines seen per rank (any line, metric or not). */
  readonly lineCounts = new Map<string, number>();
  private readonly tail: FileTail;

  constructor(runDir: string) {
    this.tail = new FileTail(join(runDir, MERGED_LOG_FILE));
  }

  /** Reads what merged.log gained since the last call; returns how many lines. */
  refresh(): Promise<number> {
    return this.tail.readNew(async (lines) => {
      for (const text of lines) this.add(text);
    });
  }

  /** The run is over: a last line the writer never finished is still a line. */
  finish(): void {
    for (const text of this.tail.rest()) this.add(text);
  }

  close(): Promise<void> {
    return this.tail.close();
  }

  private add(text: string): void {
    const merged = parseMergedLine(text.endsWith('\r') ? text.slice(0, -1) : text);
    if (!merged) return;
    const label = merged.label;
    const lineNo = (this.lineCounts.get(label) ?? 0) + 1;
    this.lineCounts.set(label, lineNo);
    let tail = this.lastLines.get(label);
    if (!tail) this.lastLines.set(label, (tail = []));
    tail.push(merged.stream === 'stderr' ? `[stderr] ${merged.line}` : merged.line);
    if (tail.length > LAST_LINES) tail.shift();
    const event = readMetricLine(merged.line);
    if (event)
      this.rows.push({ time: merged.time, rank: label, host: merged.host, device: merged.device, line: lineNo, event });
  }
}

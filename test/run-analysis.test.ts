import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunAnalysis } from '../src/launch/run-analysis.js';
import type { HostSpec, RunPlan } from '../src/plan/types.js';
import { METRICS_FILE, writeMetrics } from '../src/report/metrics-file.js';
import { RunRecorder } from '../src/run-folder/recorder.js';
import { summarizeRunFolder } from '../src/summary/run-summary.js';
import { findStragglers } from '../src/summary/stragglers.js';
import { manualPlan } from './helpers/plan.js';

const host: HostSpec = { name: 'vm', address: '127.0.0.1', local: true, devices: 'auto' };

function plan(runId: string, job: Partial<RunPlan['job']> = {}): RunPlan {
  const ranks = Array.from({ length: 4 }, (_, i) => ({
    rank: i,
    host: 'vm',
    deviceId: i,
    cwd: '/tmp',
    argv: ['true'],
    env: {},
  }));
  return manualPlan(runId, [host], ranks, job);
}

/** What the ranks print: every kind of line the parsers read, and lines they must skip, in chunks. */
function chunksOf(rank: number): Buffer[] {
  const lines: (string | Buffer)[] = [];
  for (let step = 1; step <= 12; step++) {
    lines.push(`rank ${rank} some chatter without any of the words ${step}`);
    lines.push(`epoch[1], iter[${step}], loss:${(3 - step / 10 + rank / 100).toFixed(4)}, mean_fps:${3100 + rank}`);
    lines.push(`EPOCH: 1 STEP: ${step}, per step time: ${rank === 3 ? 200 + step : 100 + step} ms`);
    if (step === 6) lines.push(`progress bar 50%\rEpoch[1], iter[6], loss:9.9`); // after a CR: not this line
  }
  lines.push(Buffer.from([0x66, 0xff, 0xfe, 0x20, 0x69, 0x74, 0x65, 0x72, 0x5b, 0x39, 0x5d])); // not UTF-8, has "iter[9]"
  lines.push(`before results=[[${1000 + rank}],[${1200 + rank}],[1250]]`);
  lines.push(`after allreduce eval: top1_correct=${4004 + 6}, tot=5000, acc=80.2%`);
  lines.push(`{"npurun":"metric","name":"top1_correct","value":${1000 + rank},"reduce":"sum"}`);
  lines.push(`{"npurun":"metric","name":"grad_norm","value":NaN,"reduce":"max"}`);
  lines.push(`{"npurun":"metric","name":"broken","value":"x","reduce":"sum"}`);
  lines.push(`Inference Performance: ${25000 + rank} img/sec`);
  // Chunks of 3 lines, the last one without its newline (the rank's final partial line).
  const bytes = Buffer.concat(lines.map((l) => Buffer.concat([Buffer.from(l), Buffer.from('\n')])));
  const body = bytes.subarray(0, bytes.length - 1);
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += 97) out.push(body.subarray(i, i + 97));
  return out;
}

async function record(p: RunPlan, analysis: RunAnalysis, timestamps: boolean): Promise<string> {
  const runsDir = mkdtempSync(join(tmpdir(), 'npurun-analysis-'));
  const rec = await RunRecorder.create({
    runsDir,
    plan: p,
    argv: ['npurun', 'launch'],
    timestamps,
    console: 'none',
    onLines: (label, lines, time, bytes) => analysis.lines(label, lines, time, bytes),
  });
  analysis.open(rec.dir);
  const streams = p.ranks.map((r) => rec.stream(r.label, 'stdout'));
  const chunks = p.ranks.map((r) => chunksOf(r.rank));
  // Interleaved, a little time apart, so progress arrival times differ between ranks.
  for (let i = 0; i < Math.max(...chunks.map((c) => c.length)); i++) {
    for (const [k, s] of streams.entries()) {
      const c = chunks[k]?.[i];
      if (c) s.write(c);
    }
    if (i % 8 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  }
  for (const s of streams) s.end();
  await rec.finish({ status: 'succeeded', exitCode: 0 });
  await analysis.close();
  return rec.dir;
}

describe('the launcher reads what ranks print as it arrives', () => {
  for (const [name, job, timestamps] of [
    ['default progress pattern', {}, false],
    ['default progress pattern, --timestamps', {}, true],
    ['a job progress pattern', { progressPattern: 'STEP: \\d+' }, false],
  ] as const) {
    it(`gives the summary, stragglers and metrics.jsonl that reading merged.log afterwards gives (${name})`, async () => {
      const p = plan(`analysis-${name.replace(/ /g, '-')}`, job);
      const analysis = new RunAnalysis(p);
      const dir = await record(p, analysis, timestamps);
      const online = readFileSync(join(dir, METRICS_FILE), 'utf8');

      const fromFile = await summarizeRunFolder(dir, p);
      expect(analysis.summary()).toEqual(fromFile);
      // Something was read at all: the comparison above is not between two empty summaries.
      expect(fromFile.training).toBeDefined();
      expect(fromFile.allreduce).toBeDefined();
      expect(Object.keys(fromFile.metrics)).toContain('top1_correct');
      expect(JSON.stringify(fromFile)).toMatch(/broken/);

      const stragglers = await findStragglers(dir, job.progressPattern ? { progressPattern: job.progressPattern } : {});
      expect(analysis.stragglers()).toEqual(stragglers);
      expect(stragglers.map((s) => s.label)).toEqual(['3']);

      await writeMetrics(dir);
      const offline = readFileSync(join(dir, METRICS_FILE), 'utf8');
      expect(online).toBe(offline);
      expect(online.split('\n').length).toBeGreaterThan(4 * 15);
    });
  }
});

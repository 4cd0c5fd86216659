import { describe, expect, it } from 'vitest';
import { parseMetricLine, rankMetricsFromLines } from '../src/summary/metrics.js';
import { renderSummary, summarize } from '../src/summary/summary.js';

describe('metric lines as the model-zoo scripts print them', () => {
  it('parses a MindSpore training line with its log prefix', () => {
    expect(parseMetricLine('2021-03-01 10:11:12,345:INFO:epoch[138], iter[1391250], loss:2.0361586, mean_fps:746.92imgs/sec')).toEqual({
      kind: 'train', epoch: 138, iter: 1391250, loss: 2.0361586, fps: 746.92,
    });
  });
  it('parses per-rank counts, both allreduce lines and inference throughput', () => {
    expect(parseMetricLine('before results=[[39723], [47211], [49920]]')).toEqual({ kind: 'eval-counts', top1: 39723, top5: 47211, total: 49920 });
    expect(parseMetricLine('after allreduce eval: top1_correct=39723, tot=49920,acc=79.57%(TOP1)')).toEqual({ kind: 'allreduce', metric: 'top1', correct: 39723, total: 49920, accuracy: 79.57 });
    expect(parseMetricLine('after allreduce eval: top5_correct=47211, tot=49920,acc=94.57%(TOP5)')).toMatchObject({ metric: 'top5', correct: 47211 });
    expect(parseMetricLine('Inference Performance: 799.19 img/sec')).toEqual({ kind: 'throughput', imgsPerSec: 799.19 });
  });
  it('parses the structured form anywhere in a line and ignores malformed ones', () => {
    expect(parseMetricLine('[rank 3] {"npurun":"metric","name":"top1_correct","value":123,"reduce":"sum"}')).toEqual({ kind: 'metric', name: 'top1_correct', value: 123, reduce: 'sum' });
    expect(parseMetricLine('{"npurun":"metric","name":"x","value":"12"}')).toBeUndefined();
    expect(parseMetricLine('{"npurun":"metric","name":"x","value":1,"reduce":"median"}')).toMatchObject({ reduce: 'last' });
    expect(parseMetricLine('{"npurun": broken')).toBeUndefined();
    expect(parseMetricLine('loss is going down')).toBeUndefined();
  });
});

function rank(label: string, top1: number, top5: number, tot: number, after: [number, number, number] | undefined, fps = 100) {
  const lines = [`epoch[5], iter[100], loss:1.5, mean_fps:${fps}imgs/sec`, `before results=[[${top1}], [${top5}], [${tot}]]`];
  if (after) lines.push(`after allreduce eval: top1_correct=${after[0]}, tot=${after[2]},acc=1.00%(TOP1)`, `after allreduce eval: top5_correct=${after[1]}, tot=${after[2]},acc=1.00%(TOP5)`);
  return rankMetricsFromLines(label, lines);
}

describe('summary: reduce across ranks and cross-check the in-script allreduce', () => {
  it('sums per-rank counts, accuracy from the sums, total fps, and agrees with the allreduce', () => {
    const total: [number, number, number] = [30 + 40, 45 + 48, 50 + 50];
    const s = summarize([rank('0', 30, 45, 50, total, 100), rank('1', 40, 48, 50, total, 120)]);
    expect(s.eval).toMatchObject({ top1Correct: 70, top5Correct: 93, total: 100, top1Accuracy: 70, top5Accuracy: 93 });
    expect(s.training).toMatchObject({ lastEpoch: 5, totalFps: 220 });
    expect(s.allreduce).toEqual({ top1: { correct: 70, total: 100 }, top5: { correct: 93, total: 100 } });
    expect(s.problems).toEqual([]);
    expect(renderSummary(s)).toContain('top1 70/100 = 70.00%');
  });
  it('flags a padded sampler: allreduce totals bigger than the sum of counts', () => {
    const padded: [number, number, number] = [72, 95, 104];
    const s = summarize([rank('0', 30, 45, 50, padded), rank('1', 40, 48, 50, padded)]);
    expect(s.problems).toHaveLength(2);
    expect(s.problems[0]).toMatch(/allreduce top1 \(correct=72, tot=104\) differs from the sum of per-rank counts \(correct=70, tot=100\)/);
    expect(renderSummary(s)).toMatch(/MISMATCH: allreduce top1/);
  });
  it('flags ranks that disagree on the allreduce result and ranks that printed nothing', () => {
    const s = summarize([rank('0', 30, 45, 50, [70, 93, 100]), rank('1', 40, 48, 50, [71, 93, 100]), rankMetricsFromLines('2', ['hello'])]);
    expect(s.problems.some((p) => /rank 0 has top1_correct=70, tot=100; rank 1 has top1_correct=71/.test(p))).toBe(true);
    expect(s.problems.some((p) => /ranks 2 printed no per-rank eval counts/.test(p))).toBe(true);
  });
  it('reduces structured metrics with their own operation', () => {
    const lines = (v: number) => [`{"npurun":"metric","name":"samples","value":${v},"reduce":"sum"}`, `{"npurun":"metric","name":"peak_mem","value":${v * 10},"reduce":"max"}`];
    const s = summarize([rankMetricsFromLines('0', lines(3)), rankMetricsFromLines('1', lines(5))]);
    expect(s.metrics).toEqual({ peak_mem: { reduce: 'max', value: 50, ranks: 2 }, samples: { reduce: 'sum', value: 8, ranks: 2 } });
  });
});

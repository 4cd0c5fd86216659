import { describe, expect, it } from 'vitest';
import { parseMetricLine, rankMetricsFromLines } from '../src/summary/metrics.js';
import { renderSummary, summarize } from '../src/summary/summary.js';

describe('metric lines as the model-zoo scripts print them', () => {
  it('parses a MindSpore training line with its log prefix', () => {
    expect(
      parseMetricLine(
        '2021-03-01 10:11:12,345:INFO:epoch[138], iter[1391250], loss:2.0361586, mean_fps:746.92imgs/sec',
      ),
    ).toEqual({
      kind: 'train',
      epoch: 138,
      iter: 1391250,
      loss: 2.0361586,
      fps: 746.92,
    });
  });
  it('parses per-rank counts, both allreduce lines and inference throughput', () => {
    expect(parseMetricLine('before results=[[39723], [47211], [49920]]')).toEqual({
      kind: 'eval-counts',
      top1: 39723,
      top5: 47211,
      total: 49920,
    });
    expect(parseMetricLine('after allreduce eval: top1_correct=39723, tot=49920,acc=79.57%(TOP1)')).toEqual({
      kind: 'allreduce',
      metric: 'top1',
      correct: 39723,
      total: 49920,
      accuracy: 79.57,
    });
    expect(parseMetricLine('after allreduce eval: top5_correct=47211, tot=49920,acc=94.57%(TOP5)')).toMatchObject({
      metric: 'top5',
      correct: 47211,
    });
    expect(parseMetricLine('Inference Performance: 799.19 img/sec')).toEqual({
      kind: 'throughput',
      imgsPerSec: 799.19,
    });
  });
  it('parses the structured form anywhere in a line and ignores malformed ones', () => {
    expect(parseMetricLine('[rank 3] {"npurun":"metric","name":"top1_correct","value":123,"reduce":"sum"}')).toEqual({
      kind: 'metric',
      name: 'top1_correct',
      value: 123,
      reduce: 'sum',
    });
    expect(parseMetricLine('{"npurun":"metric","name":"x","value":"12"}')).toBeUndefined();
    expect(parseMetricLine('{"npurun":"metric","name":"x","value":1,"reduce":"median"}')).toBeUndefined();
    expect(parseMetricLine('{"npurun": broken')).toBeUndefined();
    expect(parseMetricLine('loss is going down')).toBeUndefined();
  });
});

function rank(
  label: string,
  top1: number,
  top5: number,
  tot: number,
  after: [number, number, number] | undefined,
  fps = 100,
) {
  const lines = [
    `epoch[5], iter[100], loss:1.5, mean_fps:${fps}imgs/sec`,
    `before results=[[${top1}], [${top5}], [${tot}]]`,
  ];
  if (after)
    lines.push(
      `after allreduce eval: top1_correct=${after[0]}, tot=${after[2]},acc=1.00%(TOP1)`,
      `after allreduce eval: top5_correct=${after[1]}, tot=${after[2]},acc=1.00%(TOP5)`,
    );
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
    expect(renderSummary(s)).toContain('agrees on every rank and with the per-rank sums');
  });
  it('flags a wrong in-script reduction: allreduce totals other than the sum of counts', () => {
    const wrong: [number, number, number] = [72, 95, 104];
    const s = summarize([rank('0', 30, 45, 50, wrong), rank('1', 40, 48, 50, wrong)]);
    expect(s.problems).toHaveLength(2);
    expect(s.problems[0]).toMatch(
      /allreduce top1 \(correct=72, tot=104\) differs from the sum of per-rank counts \(correct=70, tot=100\): the in-script reduction is wrong/,
    );
    expect(renderSummary(s)).toMatch(/PROBLEM: allreduce top1/);
  });
  it('flags ranks that disagree on the allreduce result; a rank that printed nothing is a note', () => {
    const s = summarize([
      rank('0', 30, 45, 50, [70, 93, 100]),
      rank('1', 40, 48, 50, [71, 93, 100]),
      rankMetricsFromLines('2', ['hello']),
    ]);
    expect(s.problems.some((p) => /rank 0 has top1_correct=70, tot=100; rank 1 has top1_correct=71/.test(p))).toBe(
      true,
    );
    expect(s.notes.some((p) => /rank 2 printed no per-rank eval counts/.test(p))).toBe(true);
  });
  it('reduces structured metrics with their own operation', () => {
    const lines = (v: number) => [
      `{"npurun":"metric","name":"samples","value":${v},"reduce":"sum"}`,
      `{"npurun":"metric","name":"peak_mem","value":${v * 10},"reduce":"max"}`,
    ];
    const s = summarize([rankMetricsFromLines('0', lines(3)), rankMetricsFromLines('1', lines(5))]);
    expect(s.metrics).toEqual({
      peak_mem: { reduce: 'max', value: 50, ranks: 2 },
      samples: { reduce: 'sum', value: 8, ranks: 2 },
    });
  });
});

describe('edges (issue 18)', () => {
  it('18.5: nan and inf losses and a JSON NaN are parsed, shown, flagged per rank, and are problems', () => {
    expect(parseMetricLine('epoch[3], iter[300], loss:nan, mean_fps:100imgs/sec')).toMatchObject({ loss: NaN });
    expect(parseMetricLine('epoch[3], iter[300], loss:inf')).toMatchObject({ loss: Infinity });
    expect(parseMetricLine('epoch[3], iter[300], loss: -inf')).toMatchObject({ loss: -Infinity });
    expect(parseMetricLine('{"npurun": "metric", "name": "loss", "value": NaN, "reduce": "mean"}')).toMatchObject({
      value: NaN,
    });
    expect(parseMetricLine('{"npurun": "metric", "name": "g", "value": -Infinity, "reduce": "max"}')).toMatchObject({
      value: -Infinity,
    });
    const ok = rankMetricsFromLines('0', ['epoch[1], iter[100], loss:2.5', 'epoch[2], iter[200], loss:2.1']);
    const diverged = rankMetricsFromLines('1', [
      'epoch[1], iter[100], loss:2.5',
      'epoch[2], iter[200], loss:nan',
      'epoch[3], iter[300], loss:1.9',
    ]);
    const jsonNan = rankMetricsFromLines('2', [
      '{"npurun": "metric", "name": "grad_norm", "value": NaN, "reduce": "max"}',
    ]);
    const s = summarize([ok, diverged, jsonNan]);
    expect(s.problems).toEqual([
      'rank 1: loss at epoch 2, iter 200 is nan (line 2): the run diverged',
      'rank 2: metric grad_norm is nan (line 1): the run diverged',
    ]);
    const text = renderSummary(s);
    expect(text).toMatch(/^1 +3 +300 +1\.9000 +- +DIVERGED: nan at line 2$/m);
    expect(text).toMatch(/PROBLEM: rank 1: loss at epoch 2/);
    expect(renderSummary(summarize([rankMetricsFromLines('0', ['epoch[1], iter[1], loss:inf'])]))).toMatch(
      /^0 +1 +1 +inf/m,
    );
  });

  it("18.6: the README's allreduce form (no acc=) and the model zoo's forms are all read, so a real mismatch is caught", () => {
    expect(parseMetricLine('after allreduce eval: top1_correct=40001, tot=50000')).toEqual({
      kind: 'allreduce',
      metric: 'top1',
      correct: 40001,
      total: 50000,
      accuracy: 80.002,
    });
    expect(parseMetricLine('after allreduce eval: top5_correct=47211, tot=49920, acc=94.57%')).toMatchObject({
      metric: 'top5',
      accuracy: 94.57,
    });
    expect(parseMetricLine('after allreduce eval: top1_correct=39723, tot=49920,acc=79.57%(TOP1)')).toMatchObject({
      correct: 39723,
      accuracy: 79.57,
    });
    const r = (label: string, c: number, after: string) =>
      rankMetricsFromLines(label, [`before results=[[${c}], [${c}], [25000]]`, after]);
    const s = summarize([
      r('0', 20000, 'after allreduce eval: top1_correct=40001, tot=50000'),
      r('1', 20000, 'after allreduce eval: top1_correct=40001, tot=50000'),
    ]);
    expect(s.problems).toEqual([
      expect.stringMatching(
        /allreduce top1 \(correct=40001, tot=50000\) differs from the sum of per-rank counts \(correct=40000, tot=50000\)/,
      ),
    ]);
  });

  it('18.7: a rank-0-only reduction is a note, not a mismatch; values that disagree still are', () => {
    const lines = (c: number) => [`before results=[[${c}], [${c}], [50]]`];
    const s = summarize([
      rankMetricsFromLines('0', [...lines(30), 'after allreduce eval: top1_correct=70, tot=100']),
      rankMetricsFromLines('1', lines(40)),
    ]);
    expect(s.problems).toEqual([]);
    expect(s.notes).toContainEqual(expect.stringMatching(/only rank 0 printed the "after allreduce" top1 line/));
    expect(s.allreduce).toEqual({ top1: { correct: 70, total: 100 } });
    expect(renderSummary(s)).toContain('agrees on every rank that printed it');
  });

  it('18.8: tot above the dataset size is padding (a problem naming the excess); without a size, padding cannot be checked', () => {
    const padded = (label: string) =>
      rankMetricsFromLines(label, [
        'before results=[[30], [40], [25088]]',
        'after allreduce eval: top1_correct=60, tot=50176',
      ]);
    const wrongSum = summarize([padded('0'), padded('1')], { datasetSize: 50000 });
    expect(wrongSum.problems).toContainEqual(
      'tot=50176 is 176 above the dataset size 50000: a padded sampler evaluated 176 samples twice, so the accuracy is off',
    );
    const unknown = summarize([padded('0'), padded('1')]);
    expect(unknown.problems).toEqual([]);
    expect(unknown.notes).toContainEqual(expect.stringMatching(/^padding cannot be checked: no dataset size/));
    // The size may come from a metric line instead of the job file.
    const fromMetric = summarize([
      padded('0'),
      rankMetricsFromLines('1', [
        'before results=[[30], [40], [25088]]',
        'after allreduce eval: top1_correct=60, tot=50176',
        '{"npurun":"metric","name":"dataset_size","value":50000,"reduce":"max"}',
      ]),
    ]);
    expect(fromMetric.datasetSize).toBe(50000);
    expect(fromMetric.problems).toContainEqual(expect.stringMatching(/176 above the dataset size 50000/));
    expect(renderSummary(fromMetric)).toMatch(/PROBLEM: tot=50176 is 176 above/);
  });

  it('18.9: string values, unknown or missing reduces and overflowing sums each get a warning naming rank and line', () => {
    const a = rankMetricsFromLines('0', [
      'hello',
      '{"npurun":"metric","name":"n","value":"12","reduce":"sum"}',
      '{"npurun":"metric","name":"n","value":1,"reduce":"avg"}',
      '{"npurun":"metric","name":"m","value":1}',
      '{"npurun":"metric","name":"big","value":1e308,"reduce":"sum"}',
    ]);
    const b = rankMetricsFromLines('1', ['{"npurun":"metric","name":"big","value":1e308,"reduce":"sum"}']);
    const s = summarize([a, b]);
    expect(s.warnings).toEqual([
      'rank 0, line 2: metric n: value "12" is not a number; line ignored',
      'rank 0, line 3: metric n: reduce "avg"; expected one of sum, mean, min, max; line ignored',
      'rank 0, line 4: metric m: reduce missing; expected one of sum, mean, min, max; line ignored',
      'metric big: the sum over 2 ranks overflows a double (rank 0 line 5, rank 1 line 1)',
    ]);
    expect(Object.keys(s.metrics)).toEqual(['big']);
    expect(s.problems).toEqual([]);
  });
});

import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it } from 'vitest';
import { chartData } from '../src/report/charts.js';
import { metricsCsv, metricsJsonl, writeMetrics } from '../src/report/metrics-file.js';
import { startDashboard } from '../src/report/dashboard.js';
import { buildReportData, reportDataOf, snapshotRunFolder, type ReportData } from '../src/report/model.js';
import { renderReportHtml, scriptJson } from '../src/report/page.js';
import type { MetricRow } from '../src/report/series.js';
import type { RankExitRecord, RunRecord } from '../src/run-folder/record.js';

// A real run folder of `npurun launch --job templates/demo-8p.yaml`: 8 ranks x 10 training lines,
// eval counts, allreduce results, checkpoints every 2 epochs.
const FIXTURE = new URL('./fixtures/report-demo/', import.meta.url).pathname;
const schema = JSON.parse(readFileSync(new URL('../schemas/metrics.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv({ allErrors: true, allowUnionTypes: true }).compile(schema);

const dirs: string[] = [];
function copyFixture(): string {
  const dir = mkdtempSync(join(tmpdir(), 'npurun-report-'));
  dirs.push(dir);
  cpSync(FIXTURE, dir, { recursive: true });
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function row(
  rank: string,
  iter: number,
  loss: number,
  fps?: number,
  time = `2026-01-01T00:00:${String(iter).padStart(2, '0')}.000Z`,
): MetricRow {
  return {
    time,
    rank,
    host: 'h',
    device: Number(rank),
    line: iter,
    event: { kind: 'train', epoch: 1, iter, loss, ...(fps !== undefined ? { fps } : {}) },
  };
}

describe('report data of a real demo run folder', () => {
  it('has every rank ok, one loss and fps series per rank with 10 points, the median, and the allreduce verdict', async () => {
    const d = await reportDataOf(FIXTURE);
    expect(d.run.id).toBe('20261123-201306-demo-77f2');
    expect(d.run.status).toBe('succeeded');
    expect(d.run.worldSize).toBe(8);
    expect(d.ranks.map((r) => r.state)).toEqual(Array(8).fill('ok'));
    expect(d.charts.labels).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    expect(d.charts.points).toEqual(Array(8).fill(10));
    expect(d.charts.steps).toEqual([20, 40, 60, 80, 100, 120, 140, 160, 180, 200]);
    expect(d.charts.loss.every((s) => s.every((v) => typeof v === 'number'))).toBe(true);
    // rank 0's last loss as printed, and the median of the 8 ranks' last losses.
    expect(d.charts.loss[0]?.[9]).toBe(3.3389921);
    const last = d.charts.loss.map((s) => s[9] as number).sort((a, b) => a - b);
    expect(d.charts.lossMedian[9]).toBeCloseTo(((last[3] as number) + (last[4] as number)) / 2, 9);
    expect(d.charts.outliers).toEqual([]);
    expect(d.eval.verdict).toBe('agrees');
    expect(d.eval.perRank).toHaveLength(8);
    expect(d.eval.summary.eval?.top1Correct).toBe(39565);
    expect(d.rootCause).toBeUndefined();
    expect(d.ranks[0]?.lastLines.at(-1)).toContain('Inference Performance');
  });

  it('folds the events into a timeline: launch, starts, exits, one entry per checkpoint step with completeness', async () => {
    const d = await reportDataOf(FIXTURE);
    const texts = d.timeline.map((t) => t.text);
    expect(texts[0]).toBe('launch: 8 ranks on 1 host (preflight passed)');
    expect(texts).toContain('8 ranks started');
    expect(texts).toContain('8 ranks exited with code 0');
    expect(texts).toContain('checkpoint step 200 (epoch 10): 8/8 saving ranks complete');
    expect(texts.filter((t) => t.startsWith('checkpoint step'))).toHaveLength(5);
    expect(texts.at(-1)).toBe('run succeeded, exit code 0');
    expect(d.checkpoints.map((c) => [c.step, c.epoch, c.ranks, c.saving, c.complete])).toEqual(
      [40, 80, 120, 160, 200].map((s) => [s, s / 20, 8, 8, true]),
    );
  });

  it('marks a checkpoint step that not every saving rank completed', async () => {
    const dir = copyFixture();
    const events = readFileSync(join(dir, 'events.jsonl'), 'utf8').split('\n');
    writeFileSync(
      join(dir, 'events.jsonl'),
      events
        .filter((l) => !(l.includes('"ckpt-saved"') && l.includes('"label":"5"') && l.includes('"step":200')))
        .join('\n'),
    );
    const d = await reportDataOf(dir);
    const entry = d.timeline.find((t) => t.text.startsWith('checkpoint step 200'));
    expect(entry).toMatchObject({ text: 'checkpoint step 200 (epoch 10): 7/8 saving ranks complete', level: 'warn' });
    expect(d.checkpoints.at(-1)).toMatchObject({ step: 200, ranks: 7, saving: 8, complete: false });
  });

  it('names the root cause with its host, device, classification and last lines; others stopped', async () => {
    const dir = copyFixture();
    const record = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;
    record.status = 'failed';
    record.exit_code = 7;
    record.root_cause = '3';
    for (const r of record.ranks) {
      r.exit =
        r.label === '3'
          ? { code: 7, signal: null, cause: 'exited', root_cause: true, ended_at: record.ended_at as string }
          : { code: null, signal: 'SIGTERM', cause: 'stopped', root_cause: false, ended_at: record.ended_at as string };
    }
    writeFileSync(join(dir, 'run.json'), JSON.stringify(record));
    appendFileSync(
      join(dir, 'merged.log'),
      [
        '2026-11-23T20:13:09.700Z [3 vm dev3 stderr] Traceback (most recent call last):',
        '2026-11-23T20:13:09.700Z [3 vm dev3 stderr]   File "train.py", line 3, in <module>',
        '2026-11-23T20:13:09.701Z [3 vm dev3 stderr] ValueError: bad shape',
      ].join('\n') + '\n',
    );
    const d = await reportDataOf(dir);
    expect(d.ranks.map((r) => r.state)).toEqual([
      'stopped',
      'stopped',
      'stopped',
      'root-cause',
      'stopped',
      'stopped',
      'stopped',
      'stopped',
    ]);
    expect(d.rootCause).toMatchObject({
      label: '3',
      host: 'vm',
      device: 3,
      end: 'exited with code 7',
      classification: 'Python exception: ValueError: bad shape',
    });
    expect(d.rootCause?.lastLines.at(-1)).toBe('[stderr] ValueError: bad shape');
  });

  it('a record left "running" by a launcher that is gone is not live and its ranks are unknown', async () => {
    const dir = copyFixture();
    const record = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;
    Object.assign(record, {
      status: 'running',
      ended_at: null,
      exit_code: null,
      launcher_host: (await import('node:os')).hostname(),
      launcher_pid: 2 ** 22 + 17,
      launcher_start_ticks: 1,
    });
    for (const r of record.ranks) r.exit = null;
    writeFileSync(join(dir, 'run.json'), JSON.stringify(record));
    const d = await reportDataOf(dir);
    expect(d.run.live).toBe(false);
    expect(d.run.status).toBe('unknown (launcher gone)');
    expect(new Set(d.ranks.map((r) => r.state))).toEqual(new Set(['unknown']));
    expect(d.charts.points).toEqual(Array(8).fill(10));
  });
});

describe('metrics.jsonl and metrics.csv', () => {
  it('writes one schema-valid line per metric line of the run folder', async () => {
    const dir = copyFixture();
    const [path] = await writeMetrics(dir);
    const lines = readFileSync(path as string, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) expect(validate(l), JSON.stringify(validate.errors)).toBe(true);
    const kinds = lines.reduce<Record<string, number>>(
      (acc, l) => ({ ...acc, [l.kind as string]: (acc[l.kind as string] ?? 0) + 1 }),
      {},
    );
    expect(kinds).toEqual({ train: 80, eval: 8, allreduce: 16, throughput: 8 });
    expect(lines.find((l) => l.kind === 'train' && l.rank === '0' && l.step === 200)).toMatchObject({
      epoch: 10,
      loss: 3.3389921,
      fps: 3124.75,
      host: 'vm',
      device: 0,
    });
  });

  it('keeps NaN and infinities as strings in JSON Lines and as pandas spells them in CSV', () => {
    const rows = [row('0', 1, Number.NaN, Number.POSITIVE_INFINITY), row('1', 1, Number.NEGATIVE_INFINITY, 5)];
    rows.push({
      time: '2026-01-01T00:00:02.000Z',
      rank: '1',
      host: 'h',
      device: 1,
      line: 3,
      event: { kind: 'metric', name: 'grad,norm', value: Number.NaN, reduce: 'max' },
    });
    const jsonl = metricsJsonl(rows)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(jsonl[0]).toMatchObject({ loss: 'NaN', fps: 'Infinity' });
    expect(jsonl[1]).toMatchObject({ loss: '-Infinity', fps: 5 });
    expect(jsonl[2]).toMatchObject({ kind: 'metric', name: 'grad,norm', value: 'NaN' });
    for (const l of jsonl) expect(validate(l), JSON.stringify(validate.errors)).toBe(true);
    const csv = metricsCsv(rows).trim().split('\n');
    expect(csv[0]).toBe(
      'time,rank,host,device,kind,epoch,step,loss,fps,top1,top5,total,metric,correct,accuracy,imgs_per_sec,name,value,reduce',
    );
    expect(csv[1]).toBe('2026-01-01T00:00:01.000Z,0,h,0,train,1,1,NaN,inf,,,,,,,,,,');
    expect(csv[2]?.split(',').slice(7, 9)).toEqual(['-inf', '5']);
    expect(csv[3]).toContain(',"grad,norm",NaN,max');
  });
});

describe('chart data', () => {
  it('keeps NaN out of the drawn series, lists it, and names that rank', () => {
    const rows = ['0', '1', '2'].flatMap((r) =>
      [1, 2, 3].map((s) => row(r, s, r === '2' && s === 3 ? Number.NaN : 1 / s, 100)),
    );
    const c = chartData(['0', '1', '2'], rows, Date.parse('2026-01-01T00:00:00Z'));
    expect(c.loss[2]).toEqual([1, 0.5, null]);
    expect(c.points).toEqual([3, 3, 3]);
    expect(c.nonFinite).toEqual([{ label: '2', step: 3, field: 'loss', value: 'NaN' }]);
    expect(c.outliers[0]).toEqual({ label: '2', chart: 'loss', why: 'loss NaN first at step 3' });
  });

  it('names a rank much slower than the median and a rank whose loss strays', () => {
    const rows = ['0', '1', '2', '3', '4'].flatMap((r) =>
      [1, 2, 3].map((s) => row(r, s, r === '4' ? 9 : 1 + 0.01 * Number(r), r === '2' ? 50 : 100)),
    );
    const c = chartData(['0', '1', '2', '3', '4'], rows, Date.parse('2026-01-01T00:00:00Z'));
    expect(c.outliers.map((o) => `${o.chart}:${o.label}`).sort()).toEqual(['fps:2', 'loss:4']);
    expect(c.outliers.find((o) => o.chart === 'fps')?.why).toBe('0.50x the median fps (50.0 vs 100)');
  });

  it('aligns ranks that logged different steps on the union, null where a rank printed nothing', () => {
    const c = chartData(['0', '1'], [row('0', 10, 1), row('1', 20, 2), row('0', 30, 3)], 0);
    expect(c.steps).toEqual([10, 20, 30]);
    expect(c.loss).toEqual([
      [1, null, 3],
      [null, 2, null],
    ]);
    expect(c.lossMedian).toEqual([1, 2, 3]);
  });

  it('thins a very long run to at most 1500 drawn steps, the last kept, points still counted in full', () => {
    const rows = Array.from({ length: 4000 }, (_, i) =>
      row('0', i + 1, 1 / (i + 1), 10, new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString()),
    );
    const c = chartData(['0'], rows, Date.UTC(2026, 0, 1));
    expect(c.stride).toBe(3);
    expect(c.steps.length).toBeLessThanOrEqual(1500);
    expect(c.steps.at(-1)).toBe(4000);
    expect(c.points).toEqual([4000]);
    expect(c.total.t.length).toBeLessThanOrEqual(1000);
  });

  it("sums every rank's latest fps over time, one point per moment", () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const c = chartData(
      ['0', '1'],
      [
        row('0', 1, 1, 10, '2026-01-01T00:00:01.000Z'),
        row('1', 1, 1, 20, '2026-01-01T00:00:01.000Z'),
        row('0', 2, 1, 30, '2026-01-01T00:00:02.000Z'),
      ],
      t0,
    );
    expect(c.total).toEqual({ t: [1, 2], fps: [30, 50] });
  });
});

describe('the page', () => {
  it('inlines uPlot, its own script and the data, and nothing a browser would fetch', async () => {
    const html = renderReportHtml(await reportDataOf(FIXTURE));
    expect(html).toContain('uPlot');
    expect(html).toContain('id="npurun-data"');
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|@import|url\(\s*['"]?https?:/);
  });

  it('cannot be broken out of by a rank that prints </script>', () => {
    expect(scriptJson({ line: '</script><script>alert(1)</script>' })).not.toContain('</script');
    expect(JSON.parse(scriptJson({ line: '</script>\u2028' }))).toEqual({ line: '</script>\u2028' });
  });
});

describe('median line', () => {
  it("is drawn only where at least half the ranks reported (not at a live run's newest step)", () => {
    const rows = [row('0', 1, 1), row('1', 1, 3), row('2', 1, 5), row('0', 2, 7)];
    expect(chartData(['0', '1', '2'], rows, 0).lossMedian).toEqual([3, null]);
  });
});

describe('timeline of a large failed run', () => {
  it('folds the stopped ranks into one line and lists at most 20 other failures', async () => {
    const dir = copyFixture();
    const record = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;
    const t = '2026-11-23T20:13:09.700Z';
    const exits = Array.from({ length: 40 }, (_, i) => ({
      time: t,
      event: 'rank-exited',
      label: String(i),
      host: 'vm',
      code: i < 25 ? 1 : null,
      signal: i < 25 ? null : 'SIGTERM',
      cause: i < 25 ? 'exited' : 'stopped',
      root_cause: i === 0,
    }));
    const { timeline } = await import('../src/report/timeline.js');
    const texts = timeline(exits, record).map((e) => e.text);
    expect(texts[0]).toBe('rank 0 (vm) exited with code 1: root cause');
    expect(texts.filter((x) => /^rank \d+ \(vm\) exited with code 1$/.test(x))).toHaveLength(20);
    expect(texts).toContain('4 more ranks failed (each in the rank list below)');
    expect(texts).toContain('15 ranks stopped by npurun (SIGTERM)');
  });
});

describe('states the resilience work records', () => {
  it('shows hang and straggler ranks named by events, and the attempts run.json lists', async () => {
    const dir = copyFixture();
    appendFileSync(
      join(dir, 'events.jsonl'),
      [
        JSON.stringify({ time: '2026-11-23T20:13:08.000Z', event: 'hang-detected', labels: ['2'] }),
        JSON.stringify({ time: '2026-11-23T20:13:08.100Z', event: 'straggler', label: '5', host: 'vm', ratio: 2 }),
      ].join('\n') + '\n',
    );
    const snap = await snapshotRunFolder(dir);
    // run.json's schema has no attempts yet: the resilience work adds them; the page shows them as they come.
    const record = { ...snap.record, attempts: [{ cause: 'hang', root_cause: '2' }, { cause: null }] } as RunRecord;
    for (const r of record.ranks)
      if (r.label === '2')
        r.exit = {
          code: null,
          signal: 'SIGTERM',
          cause: 'stopped',
          root_cause: false,
          ended_at: record.ended_at as string,
        };
    const d = buildReportData(record, snap.events, snap.series);
    expect(d.ranks.find((r) => r.label === '2')?.state).toBe('hang');
    expect(d.ranks.find((r) => r.label === '5')?.state).toBe('straggler');
    expect(d.ranks.filter((r) => r.state === 'ok')).toHaveLength(6);
    expect(d.run.attempts).toHaveLength(2);
    expect(d.timeline.find((t) => t.kind === 'straggler')).toMatchObject({
      text: 'straggler: label=5, host=vm, ratio=2',
      level: 'warn',
    });
  });
});

describe('a diverged run, end to end from merged.log', () => {
  it('keeps loss:nan and a JSON NaN metric in metrics.jsonl and names the rank on the page', async () => {
    const dir = copyFixture();
    appendFileSync(
      join(dir, 'merged.log'),
      [
        '2026-11-23T20:13:09.800Z [6 vm dev6] epoch[11], iter[220], loss:nan, mean_fps:3100.00imgs/sec',
        '2026-11-23T20:13:09.801Z [6 vm dev6] {"npurun":"metric","name":"grad_norm","value":NaN,"reduce":"max"}',
      ].join('\n') + '\n',
    );
    const [path] = await writeMetrics(dir);
    const lines = readFileSync(path as string, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.kind === 'train' && l.step === 220)).toMatchObject({
      rank: '6',
      loss: 'NaN',
      fps: 3100,
    });
    expect(lines.find((l) => l.kind === 'metric')).toMatchObject({
      rank: '6',
      name: 'grad_norm',
      value: 'NaN',
      reduce: 'max',
    });
    for (const l of lines) expect(validate(l), JSON.stringify(validate.errors)).toBe(true);
    const d = await reportDataOf(dir);
    expect(d.charts.nonFinite).toEqual([{ label: '6', step: 220, field: 'loss', value: 'NaN' }]);
    expect(d.charts.outliers[0]).toEqual({ label: '6', chart: 'loss', why: 'loss NaN first at step 220' });
    expect(d.charts.points[6]).toBe(11);
  });
});

describe('the summary on the page is the summary of `npurun summary`', () => {
  it('a NaN loss is a problem of the run, not an allreduce mismatch; an unusable metric line is a warning citing its rank log line', async () => {
    const dir = copyFixture();
    appendFileSync(
      join(dir, 'merged.log'),
      [
        '2026-11-23T20:13:09.800Z [6 vm dev6] epoch[11], iter[220], loss:nan, mean_fps:3100.00imgs/sec',
        '2026-11-23T20:13:09.801Z [2 vm dev2] {"npurun":"metric","name":"top1","value":"high"}',
      ].join('\n') + '\n',
    );
    const d = await reportDataOf(dir);
    expect(d.eval.verdict).toBe('agrees');
    expect(d.eval.summary.problems).toContain('rank 6: loss at epoch 11, iter 220 is nan (line 21): the run diverged');
    expect(d.eval.summary.warnings.join('\n')).toMatch(/rank 2.*line 21/);
    const { summarizeRunFolder } = await import('../src/summary/run-summary.js');
    const record = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;
    const { ranks: _ranks, ...cli } = await summarizeRunFolder(dir, record);
    expect(d.eval.summary).toEqual(cli);
  });
});

describe('timeline of events it does not know', () => {
  it('shows them with their fields, one entry for a run of them about single ranks', async () => {
    const record = JSON.parse(readFileSync(join(FIXTURE, 'run.json'), 'utf8')) as RunRecord;
    const t = (ms: number) => new Date(Date.parse(record.started_at) + ms).toISOString();
    const events = [
      ...['0', '1', '2'].map((label, i) => ({ time: t(10 + i), event: 'ckpt-foreign', label, host: 'vm', files: 3 })),
      { time: t(20), event: 'output-error', label: '4', stream: 'stdout', message: 'EPIPE' },
    ];
    const { timeline } = await import('../src/report/timeline.js');
    expect(timeline(events, record).map((e) => [e.text, e.level])).toEqual([
      ['ckpt-foreign on 3 ranks (0, 1, 2); the first: ckpt-foreign: label=0, host=vm, files=3', 'info'],
      ['output-error: label=4, stream=stdout, message=EPIPE', 'warn'],
    ]);
  });
});

describe('a hang as the launcher records it', () => {
  it('the hung root cause is a ringed hang cell, the hang event one timeline entry naming it', async () => {
    const dir = copyFixture();
    appendFileSync(
      join(dir, 'events.jsonl'),
      JSON.stringify({
        time: '2026-11-23T20:13:09.650Z',
        event: 'hang',
        silent_ms: 5000,
        culprits: ['3'],
        why: 'the only rank outside all_reduce',
        ranks: [],
      }) + '\n',
    );
    const snap = await snapshotRunFolder(dir);
    const record = snap.record;
    for (const r of record.ranks) {
      r.exit =
        r.label === '3'
          ? ({
              code: null,
              signal: 'SIGABRT',
              cause: 'hang',
              root_cause: true,
              ended_at: record.ended_at as string,
            } as unknown as RankExitRecord)
          : { code: null, signal: 'SIGTERM', cause: 'stopped', root_cause: false, ended_at: record.ended_at as string };
    }
    const d = buildReportData(record, snap.events, snap.series);
    expect(d.ranks.find((r) => r.label === '3')).toMatchObject({ state: 'hang', root: true });
    expect(d.ranks.filter((r) => r.state === 'stopped')).toHaveLength(7);
    expect(d.rootCause?.label).toBe('3');
    expect(d.timeline.find((t) => t.kind === 'hang')).toMatchObject({
      text: 'hang: no rank made progress for 5 s; rank 3 (the only rank outside all_reduce)',
      level: 'error',
    });
  });
});

describe('stragglers as npurun summary names them', () => {
  it('a rank twice as slow per step is a straggler cell, in the report and once the run is over', async () => {
    const dir = copyFixture();
    const t0 = Date.parse('2026-11-23T20:13:10.000Z');
    const lines: string[] = [];
    for (let s = 1; s <= 10; s++)
      for (const r of ['0', '1', '2', '3', '4', '5', '6', '7']) {
        lines.push(
          `${new Date(t0 + s * 100).toISOString()} [${r} vm dev${r}] per step time: ${r === '5' ? 200 : 100} ms`,
        );
      }
    appendFileSync(join(dir, 'merged.log'), lines.join('\n') + '\n');
    const d = await reportDataOf(dir);
    expect(d.ranks.filter((r) => r.state === 'straggler').map((r) => r.label)).toEqual(['5']);
    // The dashboard judges them once the run is over, as the report does.
    const dash = await startDashboard({ runDir: dir, port: 0 });
    try {
      const data = (await (await fetch(`${dash.url}data.json`)).json()) as ReportData;
      expect(data.ranks.filter((r) => r.state === 'straggler').map((r) => r.label)).toEqual(['5']);
    } finally {
      await dash.close();
    }
  });
});

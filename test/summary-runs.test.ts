import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, NPURUN_BIN } from './helpers/cli-build.js';

/** `npurun summary` on real local runs (real processes, real run folders). */
const work = mkdtempSync(join(tmpdir(), 'npurun-sumruns-'));
const runs = join(work, 'runs');
const npurun = (args: string[]) =>
  execa('node', [NPURUN_BIN, ...args], { reject: false, cwd: work, env: { NO_COLOR: '1' }, all: true });
const runIdOf = (stderr: string) => (/npurun: run (\S+):/.exec(stderr) as RegExpExecArray)[1] as string;

function job(name: string, script: string, extra: string[] = []): string {
  const file = join(work, `${name}.yaml`);
  const py = join(work, `${name}.py`);
  writeFileSync(py, script);
  writeFileSync(
    file,
    [
      `name: ${name}`,
      'profile: torch',
      'nproc_per_node: 2',
      'simulate: 2',
      `workdir: ${work}`,
      `command: [/usr/bin/python3, ${py}]`,
      ...extra,
    ].join('\n') + '\n',
  );
  return file;
}

beforeAll(ensureBuilt);

describe('npurun summary on real runs', () => {
  it('a rank whose loss went nan (and a JSON NaN metric) makes summary exit 1, shown per rank; summary.json keeps "NaN"', async () => {
    const j = job(
      'nan',
      [
        'import json, os',
        'r = int(os.environ["NPURUN_RANK"])',
        'print("epoch[1], iter[10], loss:2.5, mean_fps:10imgs/sec", flush=True)',
        'print("epoch[2], iter[20], loss:%s, mean_fps:10imgs/sec" % ("nan" if r == 1 else "2.1"), flush=True)',
        'print(json.dumps({"npurun": "metric", "name": "grad_norm", "value": float("nan") if r == 1 else 1.0, "reduce": "max"}), flush=True)',
      ].join('\n'),
    );
    const r = await npurun(['launch', '--job', j, '--console', 'none', '--run-dir', runs]);
    expect(r.exitCode, r.all).toBe(0);
    const s = await npurun(['summary', runIdOf(r.stderr), '--run-dir', runs]);
    expect(s.exitCode, s.all).toBe(1);
    expect(s.stdout).toMatch(/^1 +2 +20 +nan +10 +DIVERGED: nan at line 2$/m);
    expect(s.stdout).toMatch(/PROBLEM: rank 1: loss at epoch 2, iter 20 is nan \(line 2\): the run diverged/);
    const json = JSON.parse(readFileSync(join(runs, runIdOf(r.stderr), 'summary.json'), 'utf8')) as {
      metrics: { grad_norm: { value: unknown } };
      ranks: { lastTrain?: { loss: unknown } }[];
    };
    expect(json.ranks[1]!.lastTrain!.loss).toBe('NaN');
    expect(json.metrics.grad_norm.value).toBe('NaN');
  }, 60_000);

  it('eval.dataset_size in the job file: a padded total is a problem naming the excess; rank-0-only allreduce is a note', async () => {
    const script = [
      'import os',
      'r = int(os.environ["NPURUN_RANK"])',
      'print("before results=[[%d], [%d], [%d]]" % (30 + r, 40 + r, 52), flush=True)',
      'if r == 0: print("after allreduce eval: top1_correct=61, tot=104", flush=True)',
    ].join('\n');
    const padded = await npurun([
      'launch',
      '--job',
      job('pad', script, ['eval: { dataset_size: 100 }']),
      '--console',
      'none',
      '--run-dir',
      runs,
    ]);
    expect(padded.exitCode, padded.all).toBe(0);
    expect(padded.stderr).toMatch(/PROBLEM: tot=104 is 4 above the dataset size 100/);
    const s = await npurun(['summary', runIdOf(padded.stderr), '--run-dir', runs]);
    expect(s.exitCode, s.all).toBe(1);
    expect(s.stdout).toMatch(/note: only rank 0 printed the "after allreduce" top1 line/);
    const unsized = await npurun(['launch', '--job', job('nosize', script), '--console', 'none', '--run-dir', runs]);
    const s2 = await npurun(['summary', runIdOf(unsized.stderr), '--run-dir', runs]);
    expect(s2.exitCode, s2.all).toBe(0);
    expect(s2.stdout).toMatch(/note: padding cannot be checked: no dataset size/);
    expect(s2.stdout).not.toMatch(/PROBLEM|MISMATCH/);
  }, 60_000);
});

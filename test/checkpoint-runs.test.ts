import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, NPURUN_BIN } from './helpers/cli-build.js';

/** Checkpoint ownership, {rank} and resume mapping, through real local runs of `npurun` (real processes, real disk). */
const PROGRAM = fileURLToPath(new URL('./programs/ckpt_job.py', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'npurun-ckruns-'));
const runs = join(work, 'runs');
const npurun = (args: string[]) =>
  execa('node', [NPURUN_BIN, ...args], { reject: false, cwd: work, env: { NO_COLOR: '1' }, all: true });
const runIdOf = (stderr: string) => (/npurun: run (\S+):/.exec(stderr) as RegExpExecArray)[1] as string;

function job(name: string, lines: string[]): string {
  const file = join(work, `${name}.yaml`);
  writeFileSync(
    file,
    [
      `name: ${name}`,
      'profile: torch',
      'nproc_per_node: 2',
      'simulate: 2',
      `workdir: ${join(work, 'w')}`,
      'rank_dir: r{rank}',
      ...lines,
    ].join('\n') + '\n',
  );
  return file;
}
const saver = (stepPerEpoch: number, epochs = 5) =>
  `command: [/usr/bin/python3, ${PROGRAM}, --epochs, "${epochs}", --step_per_epoch, "${stepPerEpoch}", --epoch_time, "0.15"]`;
const ckdir = (rank: number) => join(work, 'w', `r${rank}`, 'ckpt');
const printResume = [
  '--',
  '/usr/bin/python3',
  '-c',
  'import os; print("RESUME", os.environ["NPURUN_RANK"], os.environ.get("NPURUN_RESUME_CKPT"))',
];
const resumed = (stdout: string) =>
  Object.fromEntries([...stdout.matchAll(/RESUME (\d+) (\S+)/g)].map((m) => [m[1], m[2]]));

beforeAll(ensureBuilt);

describe('checkpoints of real local runs', () => {
  let runA = '';
  let runB = '';

  it("17.1: run B in run A's folders keeps, counts and offers only its own files; A's and a pretrained model are never touched", async () => {
    const a = await npurun([
      'launch',
      '--job',
      job('a', [saver(40), 'checkpoint: { interval: 1, keep_max: 10, dir: ckpt }']),
      '--console',
      'none',
      '--run-dir',
      runs,
    ]);
    expect(a.exitCode, a.all).toBe(0);
    runA = runIdOf(a.stderr);
    for (const r of [0, 1]) writeFileSync(join(ckdir(r), 'pretrained-1_1.ckpt'), Buffer.alloc(20000));
    const b = await npurun([
      'launch',
      '--job',
      job('b', [saver(20), 'checkpoint: { interval: 1, keep_max: 3, dir: ckpt }']),
      '--console',
      'none',
      '--run-dir',
      runs,
    ]);
    expect(b.exitCode, b.all).toBe(0);
    runB = runIdOf(b.stderr);
    expect(b.stderr).toMatch(/latest checkpoint every saving rank completed: epoch 5, step 100/);
    for (const r of [0, 1]) {
      const a5 = [1, 2, 3, 4, 5].map((e) => `${r}-${e}_${e * 40}.ckpt`);
      expect(readdirSync(ckdir(r)).sort()).toEqual(
        [...a5, `${r}-3_60.ckpt`, `${r}-4_80.ckpt`, `${r}-5_100.ckpt`, 'pretrained-1_1.ckpt'].sort(),
      );
    }
    const latestB = await npurun(['ckpt', 'latest', runB, '--run-dir', runs, '--json']);
    expect(latestB.exitCode, latestB.all).toBe(0);
    expect(JSON.parse(latestB.stdout).latest).toMatchObject({
      epoch: 5,
      step: 100,
      files: { '0': '0-5_100.ckpt', '1': '1-5_100.ckpt' },
    });
    // A's own record still names A's files.
    const latestA = await npurun(['ckpt', 'latest', runA, '--run-dir', runs, '--json']);
    expect(JSON.parse(latestA.stdout).latest).toMatchObject({ step: 200, files: { '0': '0-5_200.ckpt' } });
    const list = await npurun(['ckpt', 'list', runB, '--run-dir', runs]);
    expect(list.stdout).toMatch(/rank 0 \(\S+\) \S+: 6 files not written by this run, left alone/);
    expect(list.stdout).not.toMatch(/_200\.ckpt|pretrained/);
    // --resume B gives each rank B's own file, never A's step 200.
    const again = await npurun([
      'launch',
      '--job',
      job('b', [saver(20), 'checkpoint: { interval: 1, keep_max: 3, dir: ckpt2 }']),
      '--console',
      'all',
      '--run-dir',
      runs,
      '--resume',
      runB,
      ...printResume,
    ]);
    expect(again.exitCode, again.all).toBe(0);
    expect(resumed(again.stdout)).toEqual({ '0': join(ckdir(0), '0-5_100.ckpt'), '1': join(ckdir(1), '1-5_100.ckpt') });
  }, 120_000);

  it('a run recorded without checkpoints.jsonl (an older npurun) offers nothing: which files are its own is unknown', async () => {
    const copy = join(runs, 'older-run');
    cpSync(join(runs, runA), copy, { recursive: true });
    rmSync(join(copy, 'checkpoints.jsonl'));
    const latest = await npurun(['ckpt', 'latest', 'older-run', '--run-dir', runs]);
    expect(latest.exitCode, latest.all).toBe(2);
    expect(latest.stderr).toMatch(
      /has no checkpoints\.jsonl .*which checkpoint files are its own is unknown; none is offered/,
    );
    rmSync(copy, { recursive: true });
  }, 60_000);

  it('18.4: a resume into another world size with per-rank files is refused unless resume_map says how to map', async () => {
    const four = ['--simulate', '4', '--nproc-per-node', '4'];
    const refused = await npurun([
      'launch',
      '--job',
      job('c', ['checkpoint: { dir: ckpt3 }']),
      ...four,
      '--console',
      'all',
      '--run-dir',
      runs,
      '--resume',
      runB,
      ...printResume,
    ]);
    expect(refused.exitCode, refused.all).toBe(2);
    expect(refused.stderr).toMatch(/saved a checkpoint per rank with 2 ranks; this launch has 4.*resume_map/);
    expect(refused.stdout).not.toMatch(/RESUME/);
    const rank0 = await npurun([
      'launch',
      '--job',
      job('c', ['checkpoint: { dir: ckpt3 }', 'resume_map: rank0']),
      ...four,
      '--console',
      'all',
      '--run-dir',
      runs,
      '--resume',
      runB,
      ...printResume,
    ]);
    expect(rank0.exitCode, rank0.all).toBe(0);
    expect(resumed(rank0.stdout)).toEqual(
      Object.fromEntries(['0', '1', '2', '3'].map((r) => [r, join(ckdir(0), '0-5_100.ckpt')])),
    );
    const same = await npurun([
      'launch',
      '--job',
      job('c', ['checkpoint: { dir: ckpt3 }', 'resume_map: same-rank']),
      ...four,
      '--console',
      'all',
      '--run-dir',
      runs,
      '--resume',
      runB,
      ...printResume,
    ]);
    expect(same.exitCode, same.all).toBe(2);
    expect(same.stderr).toMatch(/resume_map: same-rank: ranks 2, 3 have no checkpoint of their own/);
  }, 120_000);

  it('18.2: with {rank} in the pattern, ranks saving into one shared folder each keep and resume from their own files', async () => {
    const shared = join(work, 'shared');
    rmSync(shared, { recursive: true, force: true });
    mkdirSync(shared);
    const j = job('d', [
      saver(10, 4),
      `checkpoint: { interval: 1, keep_max: 2, dir: ${shared}, pattern: "{rank}-{epoch}_{step}.ckpt" }`,
    ]);
    const r = await npurun(['launch', '--job', j, '--console', 'none', '--run-dir', runs]);
    expect(r.exitCode, r.all).toBe(0);
    expect(readdirSync(shared).sort()).toEqual(['0-3_30.ckpt', '0-4_40.ckpt', '1-3_30.ckpt', '1-4_40.ckpt']);
    const latest = await npurun(['ckpt', 'latest', runIdOf(r.stderr), '--run-dir', runs, '--json']);
    expect(JSON.parse(latest.stdout).latest).toMatchObject({
      step: 40,
      files: { '0': '0-4_40.ckpt', '1': '1-4_40.ckpt' },
    });
  }, 120_000);
});

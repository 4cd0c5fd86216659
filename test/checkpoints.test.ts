import { describe, expect, it } from 'vitest';
import {
  completeFiles,
  completeSteps,
  filesToPrune,
  latestCompleteStep,
  observe,
  parseCkptName,
  type CkptFile,
  type ObservedCkpt,
} from '../src/checkpoints/policy.js';

const f = (name: string, size = 1000, mtimeMs = 1): CkptFile => ({ name, size, mtimeMs });
const stable = (files: CkptFile[]) => observe(files, files);

describe('checkpoint names', () => {
  it("parses MindSpore's <prefix>-<epoch>_<step>.ckpt and custom patterns", () => {
    expect(parseCkptName('0-150_1251.ckpt')).toEqual({ prefix: '0', epoch: 150, step: 1251 });
    expect(parseCkptName('resnet-ckpt_3-5_500.ckpt')).toEqual({ prefix: 'resnet-ckpt_3', epoch: 5, step: 500 });
    expect(parseCkptName('model.ckpt-500.index')).toBeUndefined();
    expect(parseCkptName('model.ckpt-500.index', 'model.ckpt-{step}.index')).toEqual({ epoch: 0, step: 500 });
    expect(parseCkptName('0-150_1251.ckpt.tmp')).toBeUndefined();
  });
});

describe('stability and completeness', () => {
  it('a file whose size or mtime changed between listings is not stable', () => {
    const obs = observe(
      [f('0-1_10.ckpt', 500, 1), f('0-2_20.ckpt', 1000, 1)],
      [f('0-1_10.ckpt', 1000, 2), f('0-2_20.ckpt', 1000, 1), f('0-3_30.ckpt', 10, 3)],
    );
    expect(obs.map((o) => [o.name, o.stable])).toEqual([
      ['0-1_10.ckpt', false],
      ['0-2_20.ckpt', true],
      ['0-3_30.ckpt', false],
    ]);
  });

  it('the latest complete step is the newest one every saving rank finished', () => {
    const byRank: Record<string, ObservedCkpt[]> = {
      '0': stable([f('0-1_10.ckpt'), f('0-2_20.ckpt'), f('0-3_30.ckpt')]),
      '1': stable([f('1-1_10.ckpt'), f('1-2_20.ckpt')]), // rank 1 is slow: step 30 not yet there
    };
    expect(latestCompleteStep(byRank, ['0', '1'])).toEqual({
      epoch: 2,
      step: 20,
      files: { '0': '0-2_20.ckpt', '1': '1-2_20.ckpt' },
    });
    expect(latestCompleteStep(byRank, ['0'])).toMatchObject({ step: 30 });
  });

  it('a short file left by a rank that died mid-save is partial even though its size is stable', () => {
    const byRank = {
      '0': stable([f('0-1_10.ckpt'), f('0-2_20.ckpt'), f('0-3_30.ckpt')]),
      '1': stable([f('1-1_10.ckpt'), f('1-2_20.ckpt'), f('1-3_30.ckpt', 400)]),
    };
    expect(latestCompleteStep(byRank, ['0', '1'])).toMatchObject({ step: 20 });
    expect(completeFiles(byRank['1']).map((x) => x.name)).toEqual(['1-1_10.ckpt', '1-2_20.ckpt']);
  });

  it('each rank is judged against its own history: sharded checkpoints of different sizes per rank are all complete (18.3)', () => {
    // Pipeline parallel: rank 0 holds the embedding (large), rank 1 a few layers (small).
    const byRank = {
      '0': stable([f('0-1_10.ckpt', 9000), f('0-2_20.ckpt', 9000), f('0-3_30.ckpt', 9000)]),
      '1': stable([f('1-1_10.ckpt', 300), f('1-2_20.ckpt', 300), f('1-3_30.ckpt', 300)]),
    };
    expect(latestCompleteStep(byRank, ['0', '1'])).toMatchObject({ step: 30 });
    expect(filesToPrune(byRank['1'], 1).map((x) => x.name)).toEqual(['1-1_10.ckpt', '1-2_20.ckpt']);
    // A smaller first checkpoint of the small rank is not judged against the large rank.
    expect(
      completeSteps({ '0': stable([f('0-1_10.ckpt', 9000)]), '1': stable([f('1-1_10.ckpt', 10)]) }, ['0', '1']),
    ).toHaveLength(1);
  });

  it('where the job writes completion markers (<file>.done), a file is complete exactly when its marker is there', () => {
    const files = stable([
      f('0-1_10.ckpt'),
      f('0-1_10.ckpt.done', 0),
      f('0-2_20.ckpt'),
      f('0-2_20.ckpt.done', 0),
      f('0-3_30.ckpt', 5000),
    ]);
    expect(files.map((x) => x.name)).toEqual(['0-1_10.ckpt', '0-2_20.ckpt', '0-3_30.ckpt']);
    // 0-3 is stable, even larger than the others, but its marker is missing: not complete.
    expect(completeFiles(files).map((x) => x.name)).toEqual(['0-1_10.ckpt', '0-2_20.ckpt']);
  });

  it('{rank} in the pattern is matched against the saving rank: ranks sharing one folder own only their files (18.2)', () => {
    const pattern = '{rank}-{epoch}_{step}.ckpt';
    const shared = [0, 1, 2].flatMap((r) => [1, 2, 3].map((e) => f(`${r}-${e}_${e * 10}.ckpt`)));
    const byRank = Object.fromEntries([0, 1, 2].map((r) => [String(r), observe(shared, shared, { pattern, rank: r })]));
    expect(byRank['1']!.map((x) => x.name)).toEqual(['1-1_10.ckpt', '1-2_20.ckpt', '1-3_30.ckpt']);
    expect(latestCompleteStep(byRank, ['0', '1', '2'])?.files).toEqual({
      '0': '0-3_30.ckpt',
      '1': '1-3_30.ckpt',
      '2': '2-3_30.ckpt',
    });
    // keep_max 2 keeps two steps of each rank's own files, not two files of the folder.
    expect(filesToPrune(byRank['2']!, 2).map((x) => x.name)).toEqual(['2-1_10.ckpt']);
    expect(parseCkptName('3-5_50.ckpt', pattern)).toEqual({ rank: 3, epoch: 5, step: 50 });
  });
});

describe('retention', () => {
  it('keeps the newest K complete files, never one being written, never a protected step', () => {
    const files = observe(
      [f('0-1_10.ckpt'), f('0-2_20.ckpt'), f('0-3_30.ckpt'), f('0-4_40.ckpt'), f('0-5_50.ckpt', 200)],
      [f('0-1_10.ckpt'), f('0-2_20.ckpt'), f('0-3_30.ckpt'), f('0-4_40.ckpt'), f('0-5_50.ckpt', 600, 9)],
    );
    expect(filesToPrune(files, 2).map((x) => x.name)).toEqual(['0-1_10.ckpt', '0-2_20.ckpt']);
    expect(filesToPrune(files, 2, [{ epoch: 2, step: 20 }]).map((x) => x.name)).toEqual(['0-1_10.ckpt']);
    expect(filesToPrune(files, 0).map((x) => x.name)).toEqual(['0-1_10.ckpt', '0-2_20.ckpt', '0-3_30.ckpt']);
    expect(filesToPrune(files, 10)).toEqual([]);
  });
});

describe('bookkeeping is linear in the number of files (18.1)', () => {
  it('8 ranks x 3000 checkpoints: completeness, steps and pruning in well under a second', () => {
    const byRank: Record<string, ObservedCkpt[]> = {};
    for (let r = 0; r < 8; r++) {
      const files = Array.from({ length: 3000 }, (_, e) => f(`${r}-${e + 1}_${(e + 1) * 10}.ckpt`));
      byRank[String(r)] = stable(files);
    }
    const labels = Object.keys(byRank);
    const t0 = performance.now();
    const steps = completeSteps(byRank, labels);
    for (const r of labels) filesToPrune(byRank[r]!, 5, steps.slice(-1));
    const ms = performance.now() - t0;
    expect(steps).toHaveLength(3000);
    expect(steps.at(-1)).toMatchObject({ step: 30000 });
    // The quadratic version took seconds here.
    expect(ms).toBeLessThan(500);
  });
});

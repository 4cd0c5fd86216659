import { describe, expect, it } from 'vitest';
import { completeSteps, filesToPrune, latestCompleteStep, observe, parseCkptName, type CkptFile, type ObservedCkpt } from '../src/checkpoints/policy.js';

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
    const obs = observe([f('0-1_10.ckpt', 500, 1), f('0-2_20.ckpt', 1000, 1)], [f('0-1_10.ckpt', 1000, 2), f('0-2_20.ckpt', 1000, 1), f('0-3_30.ckpt', 10, 3)]);
    expect(obs.map((o) => [o.name, o.stable])).toEqual([['0-1_10.ckpt', false], ['0-2_20.ckpt', true], ['0-3_30.ckpt', false]]);
  });

  it('the latest complete step is the newest one every saving rank finished', () => {
    const byRank: Record<string, ObservedCkpt[]> = {
      '0': stable([f('0-1_10.ckpt'), f('0-2_20.ckpt'), f('0-3_30.ckpt')]),
      '1': stable([f('1-1_10.ckpt'), f('1-2_20.ckpt')]), // rank 1 is slow: step 30 not yet there
    };
    expect(latestCompleteStep(byRank, ['0', '1'])).toEqual({ epoch: 2, step: 20, files: { '0': '0-2_20.ckpt', '1': '1-2_20.ckpt' } });
    expect(latestCompleteStep(byRank, ['0'])).toMatchObject({ step: 30 });
  });

  it('a short file left by a rank that died mid-save is partial even though its size is stable', () => {
    const byRank = {
      '0': stable([f('0-1_10.ckpt'), f('0-2_20.ckpt'), f('0-3_30.ckpt')]),
      '1': stable([f('1-1_10.ckpt'), f('1-2_20.ckpt'), f('1-3_30.ckpt', 400)]),
    };
    expect(latestCompleteStep(byRank, ['0', '1'])).toMatchObject({ step: 20 });
    // Even its first checkpoint is judged against its peers' size.
    expect(completeSteps({ '0': stable([f('0-1_10.ckpt')]), '1': stable([f('1-1_10.ckpt', 10)]) }, ['0', '1'])).toEqual([]);
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

import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadJobFile, resolveJob } from '../src/plan/job.js';

const dir = fileURLToPath(new URL('../templates/', import.meta.url));
const templates = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

describe('job templates', () => {
  it('there is one for each common Ascend run', () => {
    expect(templates.sort()).toEqual([
      'demo-8p.yaml',
      'hourglass-tf-1p.yaml',
      'msrun-8p.yaml',
      'resnet50-cifar10-8p.yaml',
      'resnext101-imagenet-8p.yaml',
      'torch-npu-ddp.yaml',
    ]);
  });
  it.each(templates)('%s loads, validates and resolves to a complete job', (file) => {
    const job = resolveJob(loadJobFile(dir + file), { command: [], env: [] }, '/tmp');
    expect(job.command.length).toBeGreaterThan(0);
    expect(job.command.join(' ')).not.toMatch(/\{(ckpt|vars)\./);
  });
  it('the ResNeXt101 template hands its checkpoint policy to the script flags', () => {
    const job = resolveJob(loadJobFile(dir + 'resnext101-imagenet-8p.yaml'), { command: [], env: [] }, '/tmp');
    expect(job.command).toEqual(
      expect.arrayContaining(['--ckpt_interval=5', '--ckpt_save_max=5', '--is_save_on_master=1', '--max_epoch=150']),
    );
    expect(job.checkpoint).toMatchObject({ interval: 5, keepMax: 5, masterOnly: true });
    expect(job.devices).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

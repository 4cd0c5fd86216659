import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { allocationHosts, parseHostnames, parseNodeAddrs, slurmStepDevices } from '../src/inventory/slurm.js';
import { chooseEngine } from '../src/slurm/engine.js';
import { renderSbatch, type SbatchRequest } from '../src/slurm/sbatch.js';
import { srunArgs } from '../src/transport/srun.js';

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));

// `scontrol show node -o h1,h2` on the test cluster (Slurm 22.05.8), trimmed.
const SHOW_NODE = `NodeName=h1 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUEfctv=16 CPUTot=16 CPULoad=0.10 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:910b:8 NodeAddr=10.213.0.11 NodeHostName=h1 Version=22.05.8 OS=Linux State=IDLE
NodeName=h2 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUEfctv=16 CPUTot=16 Gres=gpu:910b:8 NodeAddr=10.213.0.12 NodeHostName=h2 Version=22.05.8 State=IDLE
`;

describe('Slurm allocation parsing', () => {
  it('reads NodeAddr per node and keeps the allocation order of scontrol show hostnames', () => {
    const addrs = parseNodeAddrs(SHOW_NODE);
    expect([...addrs]).toEqual([
      ['h1', '10.213.0.11'],
      ['h2', '10.213.0.12'],
    ]);
    const hosts = allocationHosts('42', parseHostnames('h2\nh1\n'), addrs);
    expect(hosts.map((h) => [h.name, h.address, h.slurm?.node, h.slurm?.jobId, h.local])).toEqual([
      ['h2', '10.213.0.12', 'h2', '42', false],
      ['h1', '10.213.0.11', 'h1', '42', false],
    ]);
    expect(() => allocationHosts('42', ['h3'], addrs)).toThrow(/no NodeAddr for node h3/);
  });

  it("maps the step's device variables: the Ascend plugin's first, then gpu gres, none = probe", () => {
    expect(slurmStepDevices({ npus: '', ascend: '', gpus: '4,5,6,7' }, 'h1')).toEqual([4, 5, 6, 7]);
    expect(slurmStepDevices({ npus: '0-3', gpus: '4,5' }, 'h1')).toEqual([0, 1, 2, 3]);
    expect(slurmStepDevices({ ascend: 'Ascend910-2,Ascend910-3' }, 'h1')).toEqual([2, 3]);
    expect(slurmStepDevices({ npus: '', ascend: '', gpus: '' }, 'h1')).toBeUndefined();
    expect(() => slurmStepDevices({ gpus: 'x' }, 'host h1')).toThrow(/host h1: Slurm set SLURM_STEP_GPUS="x"/);
  });
});

describe('engine selection', () => {
  const env = { SLURM_JOB_ID: '7' };
  it('chooses slurm inside an allocation without --hosts, and says why', () => {
    expect(chooseEngine({ env })).toEqual({ engine: 'slurm', why: 'SLURM_JOB_ID=7 is set and no --hosts was given' });
    expect(chooseEngine({ env, hostsFile: 'h.yaml' }).engine).toBe('ssh');
    expect(chooseEngine({ env: {} }).engine).toBe('local');
    expect(chooseEngine({ env: {}, hostsFile: 'h.yaml' }).engine).toBe('ssh');
    expect(chooseEngine({ env, job: 'local' }).engine).toBe('local');
    expect(chooseEngine({ env, flag: 'slurm', job: 'local' }).engine).toBe('slurm');
  });
  it('refuses contradictions, naming the flag', () => {
    expect(() => chooseEngine({ env: {}, flag: 'slurm' })).toThrow(/^--engine: slurm needs a Slurm allocation/);
    expect(() => chooseEngine({ env, flag: 'slurm', hostsFile: 'h.yaml' })).toThrow(/^--engine: slurm takes its hosts/);
    expect(() => chooseEngine({ env: {}, job: 'slurm' })).toThrow(/^engine: slurm needs/);
    expect(() => chooseEngine({ env: {}, flag: 'ssh' })).toThrow(/^--engine: ssh needs a hosts file/);
    expect(() => chooseEngine({ env: {}, flag: 'local', hostsFile: 'h' })).toThrow(/^--engine: local runs/);
    expect(() => chooseEngine({ env: {}, flag: 'k8s' })).toThrow(/^--engine: "k8s" is not an engine/);
  });
});

describe('srun and sbatch', () => {
  it('starts one agent per node as a one-task step beside the others, unbuffered, step variables dropped', () => {
    const argv = srunArgs({ jobId: '9', node: 'h2' }, 'python3');
    expect(argv.slice(0, 6)).toEqual([
      '--jobid=9',
      '--nodes=1',
      '--ntasks=1',
      '--nodelist=h2',
      '--overlap',
      '--unbuffered',
    ]);
    expect(argv.at(-1)).toMatch(/^unset SLURM_PROCID .*SLURM_NTASKS .*; exec python3 -I -S -c /);
    expect(srunArgs({ jobId: '9', node: 'h2' }).at(-1)).toMatch(/; for p in /);
  });

  const base: SbatchRequest = {
    jobFile: '/jobs/demo.yaml',
    nodes: 2,
    exclusive: true,
    jobName: 'npurun-demo',
    runsDir: '/shared/runs',
    chdir: '/shared',
    npurun: ['/usr/bin/node', '/opt/npurun/bin/npurun'],
    command: [],
  };
  it('renders a batch script: one task per node, npurun launch --engine slurm, output in the runs folder', () => {
    expect(renderSbatch({ ...base, gres: 'gpu:910b:8', time: '1-00:00', partition: 'ascend' })).toBe(
      [
        '#!/bin/sh',
        '# Written by npurun submit from /jobs/demo.yaml.',
        '#SBATCH --job-name=npurun-demo',
        '#SBATCH --nodes=2',
        '#SBATCH --ntasks-per-node=1',
        '#SBATCH --gres=gpu:910b:8',
        '#SBATCH --exclusive',
        '#SBATCH --time=1-00:00',
        '#SBATCH --partition=ascend',
        '#SBATCH --output=/shared/runs/slurm-%j.out',
        '#SBATCH --chdir=/shared',
        '# npurun starts one agent per node with srun and its ranks under them; the job ends with its exit code.',
        "exec '/usr/bin/node' '/opt/npurun/bin/npurun' 'launch' '--engine' 'slurm' '--job' '/jobs/demo.yaml' '--runs-dir' '/shared/runs'",
        '',
      ].join('\n'),
    );
    expect(renderSbatch({ ...base, command: ['python3', "it's.py"] })).toMatch(/'--' 'python3' 'it'\\''s\.py'\n$/);
  });
  it('refuses values an #SBATCH line would misread, naming the flag', () => {
    expect(() => renderSbatch({ ...base, partition: 'a b' })).toThrow(/^--partition: "a b" is not a partition/);
    expect(() => renderSbatch({ ...base, time: 'soon' })).toThrow(/^--time: "soon" is not a Slurm time limit/);
    expect(() => renderSbatch({ ...base, runsDir: '/my runs' })).toThrow(/^--runs-dir: "\/my runs" cannot be written/);
    expect(() => renderSbatch({ ...base, gres: 'gpu:8\n#SBATCH --x' })).toThrow(/^--gres:/);
  });
});

describe('bad input on the command line (real processes)', () => {
  const clean: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete clean.SLURM_JOB_ID;
  delete clean.SLURM_JOBID;

  it('--engine slurm outside an allocation: one line naming the flag, exit 2, nothing started', async () => {
    const runs = mkdtempSync(join(tmpdir(), 'npurun-slurm-bad-'));
    const r = await execa('node', [BIN, 'launch', '--engine', 'slurm', '--runs-dir', runs, '--', 'true'], {
      env: clean,
      reject: false,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'npurun: --engine: slurm needs a Slurm allocation, and SLURM_JOB_ID is not set; run npurun under salloc or sbatch, or use `npurun submit`',
    ]);
    expect(readdirSync(runs)).toEqual([]);
  });

  it('a node list Slurm rejects: exit 2 naming SLURM_JOB_NODELIST', async () => {
    const which = await execa('sh', ['-c', 'command -v scontrol'], { reject: false });
    if (which.exitCode !== 0 && process.env.CI !== 'true') return; // scontrol needed (slurm-client); CI installs it
    const r = await execa('node', [BIN, 'launch', '--console', 'none', '--', 'true'], {
      env: { ...clean, SLURM_JOB_ID: '1', SLURM_JOB_NODELIST: 'h[3-1' },
      reject: false,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^npurun: SLURM_JOB_NODELIST: Slurm rejects the node list "h\[3-1"/);
  });

  it('submit --dry-run prints the script; a bad job file or a missing --nodes is exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'npurun-submit-'));
    const job = join(dir, 'job.yaml');
    writeFileSync(job, 'profile: torch\ncommand: python3 train.py\n');
    const ok = await execa('node', [BIN, 'submit', '--job', job, '--nodes', '2', '--gres', 'gpu:910b:8', '--dry-run'], {
      env: clean,
      reject: false,
      cwd: dir,
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('#SBATCH --nodes=2\n');
    expect(ok.stdout).toContain(`'launch' '--engine' 'slurm' '--job' '${job}'`);
    const noNodes = await execa('node', [BIN, 'submit', '--job', job, '--dry-run'], { env: clean, reject: false });
    expect([noNodes.exitCode, noNodes.stderr.trim()]).toEqual([
      2,
      'npurun: --nodes: missing; expected how many nodes to allocate',
    ]);
    writeFileSync(job, 'profile: torch\ncommand: python3 train.py\nengine: k8s\n');
    const bad = await execa('node', [BIN, 'submit', '--job', job, '--nodes', '1', '--dry-run'], {
      env: clean,
      reject: false,
    });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/engine/);
  });
});

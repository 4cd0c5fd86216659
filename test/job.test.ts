import { mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NpurunError } from '../src/errors.js';
import { checkVisibleDevices, loadJobFile, resolveJob, splitCommand, type JobFlags } from '../src/plan/job.js';

const tmp = mkdtempSync(join(tmpdir(), 'npurun-job-'));
const jobFile = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};
const noFlags: JobFlags = { command: [], env: [] };
const fixtures = fileURLToPath(new URL('./fixtures/jobs/', import.meta.url));

describe('job defaults', () => {
  it('a bare command gets every documented default', () => {
    expect(resolveJob(undefined, { command: ['python', 'train.py'], env: [] }, '/w')).toEqual({
      source: 'flags',
      profile: 'mindspore',
      command: ['python', 'train.py'],
      env: {},
      workdir: '/w',
      rankDir: 'train_parallel{rank}',
      bindCores: false,
      graceSeconds: 10,
      masterPort: 29500,
      remoteDir: '/tmp/npurun-{uid}/{run_id}',
      heartbeatTimeoutSeconds: 3,
      maxRestarts: 0,
      hostWaitSeconds: 120,
    });
  });

  it('msrun defaults to the scheduler port 8118', () => {
    expect(resolveJob(undefined, { command: ['x'], env: [], profile: 'msrun' }, '/w').masterPort).toBe(8118);
  });
});

describe('job file and flags', () => {
  const file = jobFile(
    'full.yaml',
    [
      'name: resnext',
      'profile: mindspore',
      'command: [python, train.py, "--ckpt_interval={ckpt.interval}", "--data={vars.data}"]',
      'devices: "[0,4)"',
      'nproc_per_node: 2',
      'env: { OMP_NUM_THREADS: "4", GLOO_SOCKET_IFNAME: eth1 }',
      'vars: { data: /data/imagenet, epochs: 150 }',
      'args_template: ["--epochs={vars.epochs}", "--keep={ckpt.keep_max}", "--master={ckpt.master_only}", "--unit={ckpt.unit}"]',
      'workdir: runs/here',
      'rank_dir: "r{rank}_{host}"',
      'bind_cores: true',
      'grace: 20',
      'master_port: 30000',
      'rank_table: tables/t.json',
      'remote_dir: /scratch/{run_id}',
      'heartbeat_timeout: 5',
      'checkpoint: { interval: 5, keep_max: 3, master_only: true, dir: "ck_{rank}" }',
      '',
    ].join('\n'),
  );

  it('reads every field; paths are relative to the job file; placeholders are filled', () => {
    const job = resolveJob(loadJobFile(file), noFlags, '/elsewhere');
    expect(job).toEqual({
      source: file,
      name: 'resnext',
      profile: 'mindspore',
      command: [
        'python',
        'train.py',
        '--ckpt_interval=5',
        '--data=/data/imagenet',
        '--epochs=150',
        '--keep=3',
        '--master=1',
        '--unit=epoch',
      ],
      devices: [0, 1, 2, 3],
      nprocPerNode: 2,
      env: { OMP_NUM_THREADS: '4', GLOO_SOCKET_IFNAME: 'eth1' },
      workdir: join(tmp, 'runs/here'),
      rankDir: 'r{rank}_{host}',
      bindCores: true,
      graceSeconds: 20,
      masterPort: 30000,
      rankTableFile: join(tmp, 'tables/t.json'),
      remoteDir: '/scratch/{run_id}',
      heartbeatTimeoutSeconds: 5,
      maxRestarts: 0,
      hostWaitSeconds: 120,
      checkpoint: {
        interval: 5,
        unit: 'epoch',
        keepMax: 3,
        masterOnly: true,
        dir: 'ck_{rank}',
        pattern: '{prefix}-{epoch}_{step}.ckpt',
      },
    });
  });

  it('flags win over the file; a command after -- replaces the file command but keeps args_template', () => {
    const job = resolveJob(
      loadJobFile(file),
      {
        command: ['python', 'mine.py', '{vars.data}'],
        env: ['OMP_NUM_THREADS=8', 'NEW=1'],
        profile: 'torch',
        devices: '4-7',
        nprocPerNode: 4,
        rankTable: 'cli.json',
        name: 'cli',
        workdir: 'wd',
        rankDir: 'rank{rank}',
        remoteDir: '/r',
        bindCores: false,
        graceSeconds: 1,
        masterPort: 1234,
        heartbeatTimeoutSeconds: 9,
      },
      '/cwd',
    );
    expect(job).toMatchObject({
      name: 'cli',
      profile: 'torch',
      devices: [4, 5, 6, 7],
      nprocPerNode: 4,
      rankTableFile: '/cwd/cli.json',
      workdir: '/cwd/wd',
      rankDir: 'rank{rank}',
      remoteDir: '/r',
      bindCores: false,
      graceSeconds: 1,
      masterPort: 1234,
      heartbeatTimeoutSeconds: 9,
      env: { OMP_NUM_THREADS: '8', GLOO_SOCKET_IFNAME: 'eth1', NEW: '1' },
    });
    // Placeholders are the job file's: a command typed on the command line is taken literally.
    expect(job.command).toEqual([
      'python',
      'mine.py',
      '{vars.data}',
      '--epochs=150',
      '--keep=3',
      '--master=1',
      '--unit=epoch',
    ]);
  });

  it('devices may be one id or a list of ids', () => {
    expect(resolveJob(loadJobFile(jobFile('d1.yaml', 'command: [x]\ndevices: 3\n')), noFlags, '/w').devices).toEqual([
      3,
    ]);
    expect(
      resolveJob(loadJobFile(jobFile('d2.yaml', 'command: [x]\ndevices: [6, 2]\n')), noFlags, '/w').devices,
    ).toEqual([2, 6]);
  });

  it('{job_dir} is the job file directory', () => {
    expect(
      resolveJob(loadJobFile(jobFile('jd.yaml', 'command: [python, "{job_dir}/train.py"]\n')), noFlags, '/w').command,
    ).toEqual(['python', `${tmp}/train.py`]);
  });
});

describe('command strings are split like a shell, never run by one', () => {
  it.each([
    ['python train.py --lr 0.1', ['python', 'train.py', '--lr', '0.1']],
    [`python t.py --name "a b" 'c d' e\\ f`, ['python', 't.py', '--name', 'a b', 'c d', 'e f']],
    [`a "b \\" c" 'd $x'`, ['a', 'b " c', 'd $x']],
    [`echo $(id) \`id\` $HOME ~ *.py`, ['echo', '$(id)', '`id`', '$HOME', '~', '*.py']],
    [`a "" ''  b`, ['a', '', '', 'b']],
    [`x "a\\nb"`, ['x', 'a\\nb']],
    ['  lead   trail  ', ['lead', 'trail']],
  ])('%s', (text, words) => {
    expect(splitCommand(text, 'cmd')).toEqual(words);
  });

  it('backslash-newline joins lines as sh does, except inside single quotes', () => {
    expect(splitCommand('python train.py \\\n  --lr 0.1 \\\n', 'cmd')).toEqual(['python', 'train.py', '--lr', '0.1']);
    expect(splitCommand('a"b\\\nc" d\\\ne', 'cmd')).toEqual(['abc', 'de']);
    expect(splitCommand("'x\\\ny'", 'cmd')).toEqual(['x\\\ny']);
  });

  it('a `command: |` block pasted from a shell script: continuations joined, placeholders filled', () => {
    const file = `${fixtures}resnext101-multiline.yaml`;
    expect(resolveJob(loadJobFile(file), noFlags, '/w').command).toEqual([
      'python',
      `${fixtures.replace(/\/$/, '')}/train.py`,
      '--data_path=/data/imagenet train',
      '--ckpt_interval=5',
      '--ckpt_save_max=5',
      '--is_save_on_master=1',
      '--note',
      'kept \\\nliterally',
    ]);
  });

  it('an unterminated quote is an input error', () => {
    expect(() => splitCommand(`a 'b`, 'job.yaml: command')).toThrow(/job\.yaml: command: unterminated ' quote/);
  });
});

describe('--env and the environment', () => {
  it('splits at the first =, keeps the value byte for byte', () => {
    const hostile = `a'b"c $(id) \`x\` \n\t ümlaut 日本 =x= \\`;
    const job = resolveJob(undefined, { command: ['x'], env: [`V=${hostile}`, 'EQ=a=b=c', 'EMPTY='] }, '/w');
    expect(job.env).toEqual({ V: hostile, EQ: 'a=b=c', EMPTY: '' });
  });

  it.each(['1X=y', 'NOEQUALS', 'A-B=1', '=v', 'Ü=1'])('refuses --env %s', (kv) => {
    expect(() => resolveJob(undefined, { command: ['x'], env: [kv] }, '/w')).toThrow(
      /--env: ".*" is not NAME=VALUE with NAME of letters, digits and _/,
    );
  });

  it('refuses NPURUN_* from flags and from the file, naming where it came from', () => {
    expect(() => resolveJob(undefined, { command: ['x'], env: ['NPURUN_RANK=3'] }, '/w')).toThrow(
      /^--env NPURUN_RANK: NPURUN_\* variables are set by npurun itself/,
    );
    const f = jobFile('np.yaml', 'command: [x]\nenv: { NPURUN_HOST: a }\n');
    expect(() => resolveJob(loadJobFile(f), noFlags, '/w')).toThrow(new RegExp(`^${f}: env\\.NPURUN_HOST: NPURUN_`));
  });

  it('checks ASCEND_RT_VISIBLE_DEVICES: ascending ids, no spaces', () => {
    expect(() => checkVisibleDevices('0,1,2,3', 'env')).not.toThrow();
    expect(() => checkVisibleDevices('1, 2,3', 'env')).toThrow(/must be ascending ids joined by commas without spaces/);
    expect(() => checkVisibleDevices('3,1', 'env')).toThrow(/ascending order/);
    expect(() => checkVisibleDevices('1,1', 'env')).toThrow(/ascending order/);
    expect(() => resolveJob(undefined, { command: ['x'], env: ['ASCEND_RT_VISIBLE_DEVICES=0 ,1'] }, '/w')).toThrow(
      /^--env ASCEND_RT_VISIBLE_DEVICES: ASCEND_RT_VISIBLE_DEVICES="0 ,1"/,
    );
  });
});

describe('bad job input names the file, the field and what was expected', () => {
  const cases: [string, string, RegExp][] = [
    [
      'number env',
      'env:\n  OMP_NUM_THREADS: 4\n',
      /invalid job file: env\.OMP_NUM_THREADS: expected string, got number 4 \(a string: quote numbers and booleans/,
    ],
    [
      'boolean env',
      'env:\n  DEBUG: true\n',
      /invalid job file: env\.DEBUG: expected string, got boolean true \(a string: quote/,
    ],
    ['typo', 'comand: [x]\n', /invalid job file: \(top level\): unknown key "comand" \(did you mean "command"\?\)/],
    [
      'profile',
      'profile: pytorch\n',
      /invalid job file: profile: expected one of "mindspore", "msrun", "tensorflow", "torch", got string "pytorch"/,
    ],
    ['yaml syntax', 'command: [a\nb: ]\n', /:\d+:\d+: not valid YAML/],
    [
      'checkpoint unit',
      'checkpoint: { unit: epochs }\n',
      /invalid job file: checkpoint\.unit: expected one of "epoch", "step", got string "epochs"/,
    ],
    [
      'checkpoint typo',
      'checkpoint: { keepmax: 3 }\n',
      /invalid job file: checkpoint: unknown key "keepmax" \(did you mean "keep_max"\?\)/,
    ],
    ['grace', 'grace: -1\n', /invalid job file: grace: expected a number >= 0, got number -1/],
    ['port', 'master_port: 70000\n', /invalid job file: master_port: expected a number <= 65535/],
    ['args_template', 'args_template: "--x"\n', /invalid job file: args_template: expected array, got string "--x"/],
  ];
  it.each(cases)('%s', (name, text, message) => {
    const f = jobFile(`bad-${name.replace(/\W+/g, '-')}.yaml`, text);
    let caught: unknown;
    try {
      loadJobFile(f);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NpurunError);
    expect((caught as NpurunError).message.startsWith(f)).toBe(true);
    expect((caught as NpurunError).message).toMatch(message);
    expect((caught as NpurunError).exitCode).toBe(2);
  });

  it('a placeholder without a value says what to add', () => {
    const f = loadJobFile(jobFile('ph.yaml', 'command: [x, "{vars.nope}"]\n'));
    expect(() => resolveJob(f, noFlags, '/w')).toThrow(
      /ph\.yaml: command: placeholder \{vars\.nope\} has no value; expected vars\.nope in the job file/,
    );
    const g = loadJobFile(
      jobFile('ph2.yaml', 'command: [x]\nargs_template: ["--every={ckpt.interval}"]\ncheckpoint: { keep_max: 2 }\n'),
    );
    expect(() => resolveJob(g, noFlags, '/w')).toThrow(
      /ph2\.yaml: args_template: placeholder \{ckpt\.interval\} has no value; expected checkpoint\.interval in the job file/,
    );
  });

  it.each<[string, RegExp]>([
    [
      'bad-ckpt-placeholder.yaml',
      /bad-ckpt-placeholder\.yaml: command: unknown placeholder \{ckpt\.every\}; expected one of \{ckpt\.interval\} \{ckpt\.unit\} \{ckpt\.keep_max\} \{ckpt\.master_only\} \{ckpt\.dir\}/,
    ],
    ['bad-blank-command.yaml', /bad-blank-command\.yaml: command: names no program; expected the program to run/],
    [
      'bad-visible-devices.yaml',
      /bad-visible-devices\.yaml: env\.ASCEND_RT_VISIBLE_DEVICES: ASCEND_RT_VISIBLE_DEVICES="1, 2,3" must be ascending ids joined by commas without spaces/,
    ],
  ])('fixtures/jobs/%s is refused when resolved', (name, message) => {
    const f = loadJobFile(`${fixtures}${name}`);
    let caught: unknown;
    try {
      resolveJob(f, noFlags, '/w');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NpurunError);
    expect((caught as NpurunError).message).toMatch(message);
    expect((caught as NpurunError).kind).toBe('input');
  });

  it('an unquoted number in env: the message says to quote it', () => {
    expect(() => loadJobFile(`${fixtures}bad-env-unquoted.yaml`)).toThrow(
      /bad-env-unquoted\.yaml: invalid job file: env\.HCCL_CONNECT_TIMEOUT: expected string, got number 1 \(a string: quote numbers and booleans in YAML, e\.g\. "1"\)/,
    );
  });

  it('an empty program name after -- is refused too', () => {
    expect(() => resolveJob(undefined, { command: [''], env: [] }, '/w')).toThrow(/^flags: command: names no program/);
  });

  it('a profile flag that is not a profile, and no command at all', () => {
    expect(() => resolveJob(undefined, { command: ['x'], env: [], profile: 'jax' }, '/w')).toThrow(
      /^--profile: "jax" is not one of mindspore, msrun, tensorflow, torch/,
    );
    expect(() => resolveJob(undefined, noFlags, '/w')).toThrow(/no command to run/);
  });
});

describe('paths in job files and flags (issue 17.13)', () => {
  it("~ is this machine's home in workdir, checkpoint.dir, rank_table and hosts; relative paths are relative to the job file", () => {
    const home = homedir();
    const file = loadJobFile(
      jobFile(
        'tilde.yaml',
        'workdir: ~/exp\nrank_table: ~/t.json\nhosts: h.yaml\ncheckpoint: { dir: ~/ckpt }\ncommand: [x]\n',
      ),
    );
    const job = resolveJob(file, noFlags, '/elsewhere');
    expect(job.workdir).toBe(join(home, 'exp'));
    expect(job.rankTableFile).toBe(join(home, 't.json'));
    expect(job.hostsFile).toBe(join(tmp, 'h.yaml'));
    expect(job.checkpoint?.dir).toBe(join(home, 'ckpt'));
    expect(resolveJob(undefined, { ...noFlags, command: ['x'], workdir: '~' }, '/w').workdir).toBe(home);
    expect(resolveJob(undefined, { ...noFlags, command: ['x'], workdir: 'rel' }, '/w').workdir).toBe('/w/rel');
  });

  it('refuses a relative remote dir, a rank dir outside workdir and ~user, naming the field', () => {
    const flags = (extra: Partial<JobFlags>) => () =>
      resolveJob(undefined, { ...noFlags, command: ['x'], ...extra }, '/w');
    expect(flags({ remoteDir: 'rel/x' })).toThrow(
      /^--remote-dir: "rel\/x" is a relative path; expected an absolute directory/,
    );
    expect(flags({ remoteDir: '~/npurun' })()).toMatchObject({ remoteDir: join(homedir(), 'npurun') });
    expect(flags({ rankDir: '/abs/{rank}' })).toThrow(/^--rank-dir: "\/abs\/\{rank\}" is not under workdir/);
    expect(flags({ workdir: '~bob/x' })).toThrow(/^--workdir: "~bob\/x": ~user is not expanded/);
    const file = loadJobFile(jobFile('rankdir.yaml', 'rank_dir: ~/r{rank}\ncommand: [x]\n'));
    expect(() => resolveJob(file, noFlags, '/w')).toThrow(
      /rankdir\.yaml: rank_dir: "~\/r\{rank\}" is not under workdir/,
    );
  });

  it('the demo template works in a per-user directory, not a shared /tmp one', () => {
    const demo = loadJobFile(fileURLToPath(new URL('../templates/demo-8p.yaml', import.meta.url)));
    expect(resolveJob(demo, noFlags, '/w').workdir).toBe(join(homedir(), 'npurun-demo'));
  });
});

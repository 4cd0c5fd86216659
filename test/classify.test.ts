import { describe, expect, it } from 'vitest';
import { classifyFailure } from '../src/supervise/classify.js';
import { redactArgv, redactEnv, redactFields } from '../src/run-folder/redact.js';

describe('classifyFailure', () => {
  it('names the exception line of a Python traceback', () => {
    const lines = [
      'epoch[3], iter[120], loss:2.01',
      'Traceback (most recent call last):',
      '  File "train.py", line 88, in <module>',
      '    model.train(...)',
      "ValueError: For 'MatMul', the input shapes do not match",
    ];
    expect(classifyFailure(lines)).toBe("Python exception: ValueError: For 'MatMul', the input shapes do not match");
  });

  it('recognises an HCCL notify timeout (EI0002) as printed by CANN', () => {
    const lines = [
      '[W compiler_depend.ts:487] Warning: NPU warning, error code is 507048[Error]:',
      'EI0002: [PID: 7277] 2024-11-28-11:59:30.645.648 The wait execution of the Notify register times out. Reason: The Notify register has not received the Notify record from remote rank [unknown].',
      'RuntimeError: ACL stream synchronize failed.',
    ];
    expect(classifyFailure(lines)).toMatch(/^HCCL timeout \(EI0002\)/);
  });

  it('recognises an HCCL link establishment timeout (EI0006)', () => {
    const lines = [
      '[ERROR] HCCL(3977573,python):2025-11-22-17:37:04.447.996 [hccl_socket_manager.cc:816] [Wait][LinkEstablish]wait socket establish timeout, role[0] rank[0] timeout[120 s]',
      'EI0006: Getting socket times out.',
    ];
    expect(classifyFailure(lines)).toMatch(/^HCCL timeout \(EI0006\)/);
  });

  it('tells device out of memory from host out of memory', () => {
    expect(classifyFailure(['RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB'])).toBe(
      'out of device memory',
    );
    expect(classifyFailure(['Traceback (most recent call last):', '  File "x.py", line 1', 'MemoryError'])).toMatch(
      /^out of host memory/,
    );
    expect(classifyFailure(['Killed'], 'SIGKILL')).toMatch(/^out of host memory/);
  });

  it('names a missing module and a missing file', () => {
    expect(
      classifyFailure(['Traceback (most recent call last):', "ModuleNotFoundError: No module named 'mindspore'"]),
    ).toBe("Python module not found: No module named 'mindspore'");
    expect(classifyFailure(["FileNotFoundError: [Errno 2] No such file or directory: '/data/imagenet/train'"])).toBe(
      "file not found: [Errno 2] No such file or directory: '/data/imagenet/train'",
    );
    expect(classifyFailure(["python: can't open file '/w/train.py': [Errno 2] No such file or directory"])).toMatch(
      /^file not found: python: can't open file/,
    );
  });

  it('falls back to the signal, and to nothing', () => {
    expect(classifyFailure(['loss: 1.2'], 'SIGSEGV')).toBe('killed by SIGSEGV');
    expect(classifyFailure([], 'SIGKILL')).toMatch(/^killed by SIGKILL/);
    expect(classifyFailure(['all good'])).toBeUndefined();
  });
});

describe('redaction', () => {
  it('replaces values of secret-looking env keys only', () => {
    expect(
      redactEnv({
        HF_TOKEN: 'abc',
        DB_PASSWORD: 'p',
        AWS_SECRET_ACCESS_KEY: 's',
        api_key: 'k',
        MY_CREDENTIALS: 'c',
        DEVICE_ID: '3',
        RANK_TABLE_FILE: '/t.json',
      }),
    ).toEqual({
      HF_TOKEN: '<redacted>',
      DB_PASSWORD: '<redacted>',
      AWS_SECRET_ACCESS_KEY: '<redacted>',
      api_key: '<redacted>',
      MY_CREDENTIALS: '<redacted>',
      DEVICE_ID: '3',
      RANK_TABLE_FILE: '/t.json',
    });
  });

  it('redacts KEY=VALUE arguments and secret fields in events', () => {
    expect(
      redactArgv([
        'npurun',
        'launch',
        '--env',
        'HF_TOKEN=abc',
        '--env',
        'A=1',
        '--api-key=zzz',
        '--',
        'python',
        'train.py',
      ]),
    ).toEqual([
      'npurun',
      'launch',
      '--env',
      'HF_TOKEN=<redacted>',
      '--env',
      'A=1',
      '--api-key=<redacted>',
      '--',
      'python',
      'train.py',
    ]);
    expect(
      redactFields({ host: 'a', passphrase: 'pp', env: { TOKEN: 't', X: 'y' }, nested: [{ secret: 's', n: 1 }] }),
    ).toEqual({
      host: 'a',
      passphrase: '<redacted>',
      env: { TOKEN: '<redacted>', X: 'y' },
      nested: [{ secret: '<redacted>', n: 1 }],
    });
  });
});

import { describe, expect, it } from 'vitest';
import {
  EXIT,
  EXIT_CODES,
  fileErrorWords,
  NpurunError,
  notReadyError,
  passedThroughNote,
  signalExitCode,
} from '../src/errors.js';

describe('exit codes by name', () => {
  it('one table: ok 0, problems 1, input 2, host 3, internal 70; kinds map onto it', () => {
    expect(EXIT).toEqual({ ok: 0, problems: 1, input: 2, host: 3, internal: 70 });
    expect(EXIT_CODES).toEqual({ input: 2, unreachable: 3, 'not-ready': 3, runtime: 1 });
    expect(signalExitCode(15)).toBe(143);
  });

  it('a host that answered but is not ready has its own kind, still exit 3', () => {
    const e = notReadyError('host a: device 9 not found');
    expect(e).toBeInstanceOf(NpurunError);
    expect(e.kind).toBe('not-ready');
    expect(e.exitCode).toBe(3);
  });

  it("a rank's own code that npurun also uses is said to be the rank's; others need no note", () => {
    expect(passedThroughNote(2, '5')).toBe(
      "exit code 2 is rank 5's own exit code, passed through (npurun's own 2 means bad input)",
    );
    expect(passedThroughNote(3, '0')).toMatch(/npurun's own 3 means a host unreachable or not ready/);
    expect(passedThroughNote(70, '0')).toMatch(/npurun's own 70 means an internal error/);
    for (const code of [0, 1, 7, 137]) expect(passedThroughNote(code, '0')).toBeUndefined();
  });

  it('file errors in words, never the errno code alone', () => {
    const err = (code: string) => Object.assign(new Error(`${code}: x`), { code, syscall: 'open' });
    expect(fileErrorWords(err('ENOENT'))).toBe('no such file or directory');
    expect(fileErrorWords(err('EISDIR'))).toBe('is a directory');
    expect(fileErrorWords(err('EACCES'))).toBe('permission denied');
  });
});

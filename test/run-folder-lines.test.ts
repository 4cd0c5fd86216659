import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../src/run-folder/line-splitter.js';
import {
  ConsolePrefixes,
  mergedPrefix,
  parseMergedLine,
  rankLogLine,
  wantsColor,
} from '../src/run-folder/log-format.js';

const str = (lines: Buffer[]): string[] => lines.map((l) => l.toString('utf8'));

function splitAll(chunks: (string | Buffer)[], max?: number): string[] {
  const s = new LineSplitter(max);
  const lines = chunks.flatMap((c) => s.push(c));
  return str([...lines, ...s.end()]);
}

describe('LineSplitter', () => {
  it('joins a line split across chunks into one line', () => {
    expect(splitAll(['epoch[1], it', 'er[10], loss:1.7', '6\nnext\n'])).toEqual([
      'epoch[1], iter[10], loss:1.76',
      'next',
    ]);
  });

  it('keeps a final line without newline when the stream ends', () => {
    const s = new LineSplitter();
    expect(str(s.push('a\nlast words'))).toEqual(['a']);
    expect(s.bufferedBytes).toBe('last words'.length);
    expect(str(s.end())).toEqual(['last words']);
  });

  it('treats CRLF as one terminator, also when \\r and \\n arrive in different chunks', () => {
    expect(splitAll(['one\r\ntwo\r', '\nthree\r\n'])).toEqual(['one', 'two', 'three']);
  });

  it('ends a line at a lone \\r (progress bars) without producing empty lines', () => {
    expect(splitAll(['\r 10%|#', '\r 20%|##', '\r100%|###\n'])).toEqual([' 10%|#', ' 20%|##', '100%|###']);
  });

  it('keeps empty lines made by consecutive newlines', () => {
    expect(splitAll(['a\n\nb\n'])).toEqual(['a', '', 'b']);
  });

  it('reassembles a UTF-8 character whose bytes arrive in two chunks', () => {
    const bytes = Buffer.from('精度 acc=79.57%\n');
    expect(splitAll([bytes.subarray(0, 2), bytes.subarray(2)])).toEqual(['精度 acc=79.57%']);
  });

  it('cuts a line longer than the limit into pieces so memory stays bounded', () => {
    const s = new LineSplitter(10);
    const out = s.push('x'.repeat(25));
    expect(str(out)).toEqual(['x'.repeat(10), 'x'.repeat(10)]);
    expect(s.bufferedBytes).toBe(5);
    expect(str([...s.push('y\n'), ...s.end()])).toEqual(['xxxxxy']);
  });

  it('flushes a line of more than 1 MiB without newline as it comes (default limit)', () => {
    const s = new LineSplitter();
    const mib = 1024 * 1024;
    const out = s.push('z'.repeat(mib + 100));
    expect(out).toHaveLength(1);
    expect(out[0]).toHaveLength(mib);
    expect(s.bufferedBytes).toBe(100);
    expect(str(s.end())).toEqual(['z'.repeat(100)]);
  });

  it('gives the same lines whatever the chunk boundaries', () => {
    const text = 'alpha\r\nbeta\n\ngamma\rdelta\nomega';
    const whole = splitAll([text]);
    for (let size = 1; size <= 7; size++) {
      const chunks: string[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      expect(splitAll(chunks)).toEqual(whole);
    }
    expect(whole).toEqual(['alpha', 'beta', '', 'gamma', 'delta', 'omega']);
  });
});

describe('log line formats', () => {
  it('merged lines carry time, label, host, device and stream, and parse back', () => {
    const rank = { label: '3', host: 'server-b', deviceId: 3 };
    const text = `2025-05-01T10:00:00.123Z ${mergedPrefix(rank, 'stderr')}Traceback (most recent call last):`;
    expect(text).toBe('2025-05-01T10:00:00.123Z [3 server-b dev3 stderr] Traceback (most recent call last):');
    expect(parseMergedLine(text)).toEqual({
      time: '2025-05-01T10:00:00.123Z',
      label: '3',
      host: 'server-b',
      device: 3,
      stream: 'stderr',
      line: 'Traceback (most recent call last):',
    });
    const sched = `2025-05-01T10:00:00.123Z ${mergedPrefix({ label: 'sched', host: 'a b', deviceId: null }, 'stdout')}[x] y`;
    expect(parseMergedLine(sched)).toMatchObject({
      label: 'sched',
      host: 'a_b',
      device: null,
      stream: 'stdout',
      line: '[x] y',
    });
  });

  it('rank log lines mark stderr and carry the time only when asked', () => {
    expect(rankLogLine('loss: 1.7', 'stdout', undefined)).toBe('loss: 1.7\n');
    expect(rankLogLine('boom', 'stderr', undefined)).toBe('[stderr] boom\n');
    expect(rankLogLine('boom', 'stderr', '2025-05-01T10:00:00.000Z')).toBe('2025-05-01T10:00:00.000Z [stderr] boom\n');
  });

  it('console prefixes are aligned across the shown ranks', () => {
    const ranks = [
      { label: '3', host: 'server-b', deviceId: 3 },
      { label: '12', host: 'a', deviceId: 12 },
      { label: 'sched', host: 'server-a', deviceId: null },
    ];
    const p = new ConsolePrefixes(ranks, false);
    expect(p.of('3')).toBe('[    3 server-b dev3 ] ');
    expect(p.of('12')).toBe('[   12 a        dev12] ');
    expect(p.of('sched')).toBe('[sched server-a dev- ] ');
    expect(p.of('7')).toBeUndefined();
    const two = new ConsolePrefixes(
      [
        { label: '3', host: 'server-b', deviceId: 3 },
        { label: '10', host: 'server-b', deviceId: 2 },
      ],
      false,
    );
    expect(two.of('3')).toBe('[ 3 server-b dev3] ');
  });

  it('colours each rank differently and only the prefix', () => {
    const p = new ConsolePrefixes(
      [
        { label: '0', host: 'h', deviceId: 0 },
        { label: '1', host: 'h', deviceId: 1 },
      ],
      true,
    );
    expect(p.of('0')).toBe('\x1b[36m[0 h dev0]\x1b[0m ');
    expect(p.of('1')).toBe('\x1b[33m[1 h dev1]\x1b[0m ');
  });

  it('wants colour on a terminal unless NO_COLOR is set to something', () => {
    const tty = { isTTY: true } as unknown as NodeJS.WritableStream;
    const pipe = {} as NodeJS.WritableStream;
    expect(wantsColor(tty, {})).toBe(true);
    expect(wantsColor(tty, { NO_COLOR: '1' })).toBe(false);
    expect(wantsColor(tty, { NO_COLOR: '' })).toBe(true);
    expect(wantsColor(pipe, {})).toBe(false);
  });
});

// Line-by-line checks of the log row's output: every line of every rank, in order, in every file a
// contender claims to keep. Files are streamed in 1 MiB reads (8 ranks x 200k lines x several
// contenders must not be held in memory), so a check costs one pass over the bytes.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';

/** What writer.py prints as line `i` of rank `r` (the bench writes the same formula in Python). */
export const expectedLine = (r, i) => `rank ${r} line ${i} some training log text loss:1.234567`;

/** Calls onLine(text) for every newline-terminated line; returns the bytes after the last newline. */
function eachLine(file, onLine) {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let rest = '';
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const parts = (rest + buf.toString('latin1', 0, n)).split('\n');
      rest = parts.pop();
      for (const p of parts) if (onLine(p) === false) return rest;
    }
  } finally {
    closeSync(fd);
  }
  return rest;
}

/**
 * One rank's log (per-rank file of a launcher, or the floor's redirect): exactly `lines` lines, line i
 * being expectedLine(rank, i). Returns a problem in words, or undefined.
 */
export function checkRankLog(file, rank, lines) {
  if (!existsSync(file)) return `${file}: missing`;
  let i = 0;
  let bad;
  const tail = eachLine(file, (text) => {
    if (i >= lines) {
      bad = `more than ${lines} lines (line ${i + 1}: ${JSON.stringify(text.slice(0, 80))})`;
      return false;
    }
    if (text !== expectedLine(rank, i)) {
      bad = `line ${i + 1} is ${JSON.stringify(text.slice(0, 80))}, expected ${JSON.stringify(expectedLine(rank, i))}`;
      return false;
    }
    i++;
    return true;
  });
  if (bad) return `${file}: ${bad}`;
  if (tail !== '') return `${file}: ends in a line without a newline: ${JSON.stringify(tail.slice(0, 80))}`;
  if (i !== lines)
    return `${file}: ${i} lines, expected ${lines} (next expected: ${JSON.stringify(expectedLine(rank, i))})`;
  return undefined;
}

/**
 * npurun's merged.log: `TIME [LABEL HOST DEVICE] text` lines of all ranks interleaved; each rank's
 * lines must be its own (the label matches the text's rank), whole, in order, none lost or repeated.
 */
export function checkMergedLog(file, ranks, lines) {
  if (!existsSync(file)) return `${file}: missing`;
  const next = new Array(ranks).fill(0);
  let n = 0;
  let bad;
  const tail = eachLine(file, (text) => {
    n++;
    const m = /^\S+ \[(\S+) \S+ dev\S*?\] (.*)$/.exec(text);
    const r = m ? Number(m[1]) : NaN;
    if (!m || !Number.isInteger(r) || r < 0 || r >= ranks) {
      bad = `line ${n} has no rank prefix: ${JSON.stringify(text.slice(0, 100))}`;
      return false;
    }
    if (m[2] !== expectedLine(r, next[r])) {
      bad = `line ${n}, rank ${r}'s line ${next[r] + 1}, is ${JSON.stringify(m[2].slice(0, 80))}, expected ${JSON.stringify(expectedLine(r, next[r]))}`;
      return false;
    }
    next[r]++;
    return true;
  });
  if (bad) return `${file}: ${bad}`;
  if (tail !== '') return `${file}: ends in a line without a newline: ${JSON.stringify(tail.slice(0, 80))}`;
  const short = next.map((c, r) => [r, c]).filter(([, c]) => c !== lines);
  if (short.length)
    return `${file}: ${short.map(([r, c]) => `rank ${r} has ${c} lines`).join(', ')}; expected ${lines} each`;
  return undefined;
}

/** The first problem among per-rank files `fileOf(r)` for ranks 0..ranks-1, or undefined. */
export function checkRankLogs(fileOf, ranks, lines) {
  for (let r = 0; r < ranks; r++) {
    const p = checkRankLog(fileOf(r), r, lines);
    if (p) return p;
  }
  return undefined;
}

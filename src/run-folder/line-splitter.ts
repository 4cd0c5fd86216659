/**
 * A line with no terminator is cut after this many bytes and each piece is written as a line of its
 * own, so one rank printing megabytes without a newline cannot make npurun hold them all in memory.
 */
export const MAX_LINE_BYTES = 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;

/**
 * Turns the chunks of one byte stream into whole lines, as bytes: what a rank wrote is kept exactly
 * (GBK messages from CANN, binary output), never decoded and re-encoded. `\n`, `\r\n` and a lone `\r`
 * (progress bars redraw with it) end a line, also when the two bytes of `\r\n` arrive in different
 * chunks. Both bytes are ASCII, which no byte of a UTF-8 or GBK multi-byte character can be, so a
 * character split across chunks is simply carried over. Pure apart from its own buffer: no I/O.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private afterCarriageReturn = false;

  constructor(private readonly maxLineBytes: number = MAX_LINE_BYTES) {}

  /** Bytes held back waiting for their line's end. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** The lines this chunk completes (without their terminators). */
  push(chunk: Buffer | string): Buffer[] {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const lines: Buffer[] = [];
    let start = 0;
    // The `\n` of a `\r\n` whose `\r` ended the previous chunk (the line was already emitted).
    if (this.afterCarriageReturn && buf.length > 0) {
      if (buf[0] === LF) start = 1;
      this.afterCarriageReturn = false;
    }
    // Most output has no carriage return: then the lines are found with indexOf (memchr), not byte by byte.
    if (buf.indexOf(CR, start) === -1) {
      for (let i = buf.indexOf(LF, start); i !== -1; i = buf.indexOf(LF, start)) {
        lines.push(this.take(buf.subarray(start, i)));
        start = i + 1;
      }
      return this.keep(buf, start, lines);
    }
    for (let i = start; i < buf.length; i++) {
      const b = buf[i];
      if (b !== LF && b !== CR) continue;
      const line = this.take(buf.subarray(start, i));
      let next = i + 1;
      if (b === CR) {
        if (next < buf.length && buf[next] === LF) next++;
        else if (next === buf.length) this.afterCarriageReturn = true;
      }
      // A lone `\r` that ends nothing (the start of a progress-bar redraw) is not a line.
      if (!(b === CR && line.length === 0 && next === i + 1)) lines.push(line);
      start = next;
      i = next - 1;
    }
    return this.keep(buf, start, lines);
  }

  /** Holds back what follows the last line end; cuts a line that grew past the bound. */
  private keep(buf: Buffer, start: number, lines: Buffer[]): Buffer[] {
    if (start < buf.length) {
      this.pending.push(buf.subarray(start));
      this.pendingBytes += buf.length - start;
    }
    while (this.pendingBytes >= this.maxLineBytes) {
      const all = Buffer.concat(this.pending);
      lines.push(all.subarray(0, this.maxLineBytes));
      const rest = all.subarray(this.maxLineBytes);
      this.pending = rest.length > 0 ? [rest] : [];
      this.pendingBytes = rest.length;
    }
    return lines;
  }

  /** The stream ended: whatever is left is the last line, even without a newline. */
  end(): Buffer[] {
    const lines: Buffer[] = [];
    if (this.pendingBytes > 0) lines.push(this.take(Buffer.alloc(0)));
    return lines;
  }

  /** The pending bytes plus `tail`, as one line; the pending buffer is emptied. */
  private take(tail: Buffer): Buffer {
    if (this.pendingBytes === 0) return tail;
    const line = Buffer.concat([...this.pending, tail]);
    this.pending = [];
    this.pendingBytes = 0;
    return line;
  }
}

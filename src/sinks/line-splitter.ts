import { StringDecoder } from 'node:string_decoder';

/**
 * A line with no terminator is cut after this many characters (at least 1 MiB of UTF-8) and each
 * piece is written as a line of its own, so one rank printing megabytes without a newline cannot
 * make npurun hold them all in memory.
 */
export const MAX_LINE_CHARS = 1024 * 1024;

const TERMINATOR = /\r\n?|\n/g;

/**
 * Turns the chunks of one byte stream into whole lines. `\n`, `\r\n` and a lone `\r` (progress bars
 * redraw with it) end a line, also when the two bytes of `\r\n` or of a UTF-8 character arrive in
 * different chunks. Pure apart from its own buffer: no I/O.
 */
export class LineSplitter {
  private pending = '';
  private afterCarriageReturn = false;
  private readonly decoder = new StringDecoder('utf8');

  constructor(private readonly maxLineChars: number = MAX_LINE_CHARS) {}

  /** Characters held back waiting for their line's end. */
  get bufferedChars(): number {
    return this.pending.length;
  }

  /** The lines this chunk completes (without their terminators). */
  push(chunk: Buffer | string): string[] {
    return this.take(typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
  }

  /** The stream ended: whatever is left is the last line, even without a newline. */
  end(): string[] {
    const lines = this.take(this.decoder.end());
    if (this.pending.length > 0) lines.push(this.pending);
    this.pending = '';
    return lines;
  }

  private take(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    // The `\n` of a `\r\n` whose `\r` ended the previous chunk (the line was already emitted).
    if (this.afterCarriageReturn && text.length > 0) {
      if (text.charCodeAt(0) === 10) start = 1;
      this.afterCarriageReturn = false;
    }
    TERMINATOR.lastIndex = start;
    let match: RegExpExecArray | null;
    while ((match = TERMINATOR.exec(text)) !== null) {
      const line = this.pending + text.slice(start, match.index);
      this.pending = '';
      start = TERMINATOR.lastIndex;
      // A lone `\r` that ends nothing (the start of a progress-bar redraw) is not a line.
      if (!(match[0] === '\r' && line === '')) lines.push(line);
      if (match[0] === '\r' && start === text.length) this.afterCarriageReturn = true;
    }
    this.pending += text.slice(start);
    while (this.pending.length >= this.maxLineChars) {
      lines.push(this.pending.slice(0, this.maxLineChars));
      this.pending = this.pending.slice(this.maxLineChars);
    }
    return lines;
  }
}

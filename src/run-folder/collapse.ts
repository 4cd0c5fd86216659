/**
 * Console collapse (`--console collapse`, `npurun logs --collapse`): the same line printed by several
 * ranks within a short window is shown once, as `[r0-7,9] text`. Files keep every line; only what a
 * person reads is folded. Pure apart from its own buffer: times are passed in, output is returned.
 */
export class Collapser {
  /** Line text -> the ranks that printed it and when it was first seen, in first-seen order. */
  private readonly pending = new Map<string, { ranks: Set<number | string>; first: number }>();

  constructor(
    private readonly windowMs = 250,
    /** A bound on memory: beyond this many different pending lines the oldest are shown at once. */
    private readonly maxPending = 4096,
  ) {}

  /** Adds a line; returns the collapsed lines now due (seen longer than the window ago). */
  push(rank: number | string, text: string, now: number): string[] {
    let entry = this.pending.get(text);
    if (!entry) {
      entry = { ranks: new Set(), first: now };
      this.pending.set(text, entry);
    }
    entry.ranks.add(rank);
    const due = this.due(now);
    while (this.pending.size > this.maxPending) due.push(this.take(this.pending.keys().next().value as string));
    return due;
  }

  /** Lines whose window has passed. */
  due(now: number): string[] {
    const out: string[] = [];
    for (const [text, e] of this.pending) {
      if (now - e.first < this.windowMs) break;
      out.push(this.take(text));
    }
    return out;
  }

  /** Everything still pending (at the end). */
  flush(): string[] {
    return [...this.pending.keys()].map((t) => this.take(t));
  }

  private take(text: string): string {
    const e = this.pending.get(text) as { ranks: Set<number | string> };
    this.pending.delete(text);
    return `[${rankSet([...e.ranks])}] ${text}`;
  }
}

/** [0,1,2,3,5,7,8] -> "r0-3,5,7-8"; labels that are not numbers (msrun's "sched") are listed as they are. */
export function rankSet(ranks: (number | string)[]): string {
  const nums = ranks.filter((r): r is number => typeof r === 'number').sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < nums.length;) {
    let j = i;
    while (j + 1 < nums.length && (nums[j + 1] as number) === (nums[j] as number) + 1) j++;
    parts.push(j === i ? String(nums[i]) : `${nums[i]}-${nums[j]}`);
    i = j + 1;
  }
  return 'r' + [...parts, ...ranks.filter((r) => typeof r === 'string')].join(',');
}

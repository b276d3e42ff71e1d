/**
 * A bounded in-memory copy of the tail of the Raft log, so that the hot reads
 * (term() on every append response, entries() just after an append) do not
 * touch SQLite. It covers [base, base + items.length) and, as an invariant,
 * always ends at the log's last index: the store truncates and appends it
 * exactly as it does the table, after the transaction commits.
 */
import { assert } from "../util/assert.ts";

export interface WindowLimits<T> {
  readonly lengthMax: number;
  readonly weightMax: number;
  readonly weigh: (item: T) => number;
}

export class TailWindow<T> {
  private items: T[] = [];
  private weight = 0;
  /** The index of items[0]; equals last + 1 when empty. */
  private base: number;

  constructor(private readonly limits: WindowLimits<T>, last: number) {
    this.base = last + 1;
  }

  has(i: number): boolean {
    return i >= this.base && i < this.base + this.items.length;
  }

  get(i: number): T | undefined {
    return this.has(i) ? this.items[i - this.base] : undefined;
  }

  /** Items in [lo, hi) when all of them are here, else undefined. */
  slice(lo: number, hi: number): T[] | undefined {
    if (lo < this.base || hi > this.base + this.items.length) return undefined;
    return this.items.slice(lo - this.base, hi - this.base);
  }

  /** Empties the window so that it ends at `last`. */
  reset(last: number): void {
    this.items = [];
    this.weight = 0;
    this.base = last + 1;
  }

  /** Drops everything at index >= from, then appends `fresh` (which starts at `from`). */
  replaceFrom(from: number, fresh: readonly T[]): void {
    const end = this.base + this.items.length;
    assert(from <= end, () => `window gap: appending at ${from} after end ${end}`);
    if (from <= this.base) {
      this.reset(from - 1);
    } else {
      for (const dropped of this.items.splice(from - this.base)) this.weight -= this.limits.weigh(dropped);
    }
    for (const item of fresh) {
      this.items.push(item);
      this.weight += this.limits.weigh(item);
    }
    this.trim();
  }

  /** Drops items at index <= index (log compaction). */
  dropThrough(index: number): void {
    const n = Math.min(Math.max(0, index + 1 - this.base), this.items.length);
    this.dropFront(n);
  }

  /**
   * Once over a limit, drops the oldest items down to half the limits, so
   * that the cost of splicing the array is amortised over many appends.
   * Keeps at least one item, so that a huge entry is still cached.
   */
  private trim(): void {
    const { lengthMax, weightMax, weigh } = this.limits;
    const len = this.items.length;
    if (len <= lengthMax && this.weight <= weightMax) return;
    let n = 0;
    let w = this.weight;
    while (len - n > 1 && (len - n > lengthMax / 2 || w > weightMax / 2)) {
      w -= weigh(this.items[n]!);
      n++;
    }
    this.dropFront(n);
  }

  private dropFront(n: number): void {
    if (n === 0) return;
    for (const dropped of this.items.splice(0, n)) this.weight -= this.limits.weigh(dropped);
    this.base += n;
  }
}

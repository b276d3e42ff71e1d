/**
 * The promises a node keeps for callers: proposals waiting to be applied,
 * linearizable reads waiting for their read index, and long polls waiting for
 * the feed. Every waiter has a deadline; every collection has a limit.
 */
import { ProposalLostError, TimeoutError } from "./errors.ts";

interface Pending<T> {
  readonly resolve: (v: T) => void;
  readonly reject: (e: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Proposals by Raft index; settled when that index is applied. */
export class ProposalWaiters {
  private readonly byIndex = new Map<number, Pending<unknown> & { term: number }>();

  constructor(private readonly sizeMax: number) {}

  get size(): number {
    return this.byIndex.size;
  }

  full(): boolean {
    return this.byIndex.size >= this.sizeMax;
  }

  wait(at: { index: number; term: number }, timeoutMs: number): Promise<unknown> {
    // An index is proposed again only after the entry that had it left this log unapplied (truncated, or jumped by a snapshot): that write is lost.
    const older = this.byIndex.get(at.index);
    if (older) {
      clearTimeout(older.timer);
      older.reject(new ProposalLostError(at.index));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.byIndex.get(at.index)?.timer === timer) this.byIndex.delete(at.index);
        reject(new TimeoutError(`the write at log index ${at.index}`, timeoutMs));
      }, timeoutMs);
      this.byIndex.set(at.index, { resolve, reject, timer, term: at.term });
    });
  }

  /** An entry was applied: its waiter gets the result, or learns its slot went to another entry. */
  applied(index: number, term: number, result: unknown): void {
    const w = this.byIndex.get(index);
    if (!w) return;
    this.byIndex.delete(index);
    clearTimeout(w.timer);
    if (w.term === term) w.resolve(result);
    else w.reject(new ProposalLostError(index));
  }

  /** A snapshot jumped over these indexes: their outcome is unknown here. */
  skippedThrough(index: number): void {
    this.rejectWhere((i) => i <= index, (i) => new ProposalLostError(i));
  }

  /** These entries were never written (the core that held them is gone): their writers get `err`. */
  failAbove(index: number, err: Error): void {
    this.rejectWhere((i) => i > index, () => err);
  }

  private rejectWhere(which: (index: number) => boolean, err: (index: number) => Error): void {
    for (const [i, w] of this.byIndex) {
      if (!which(i)) continue;
      this.byIndex.delete(i);
      clearTimeout(w.timer);
      w.reject(err(i));
    }
  }

  failAll(err: Error): void {
    for (const w of this.byIndex.values()) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.byIndex.clear();
  }
}

interface ReadRound {
  readonly ctx: string;
  readonly waiters: Pending<void>[];
  /** Set when the read index arrives; the round settles once applied reaches it. */
  index: number | null;
}

/**
 * Linearizable reads (thesis §6.4). Reads that arrive before the round is
 * sent share it (the read index is taken after all of them began); later
 * reads start a new round.
 */
export class ReadRounds {
  private next: ReadRound | null = null;
  private readonly sent = new Map<string, ReadRound>();
  private seq = 0;
  private readonly boot = crypto.randomUUID().slice(0, 8);

  constructor(private readonly opts: { nodeId: string; roundsMax: number; waitersMax: number }) {}

  get pending(): number {
    return this.sent.size + (this.next ? 1 : 0);
  }

  wait(timeoutMs: number): Promise<void> {
    if (!this.next) {
      if (this.sent.size >= this.opts.roundsMax) return Promise.reject(new TimeoutError("a linearizable read (too many read rounds in flight)", 0));
      // The boot nonce keeps ctx values unique across restarts: a late ack for an old round must not count for a new one.
      this.next = { ctx: `${this.opts.nodeId}:${this.boot}:${++this.seq}`, waiters: [], index: null };
    }
    const round = this.next;
    if (round.waiters.length >= this.opts.waitersMax) return Promise.reject(new TimeoutError("a linearizable read (too many reads waiting)", 0));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = round.waiters.findIndex((w) => w.timer === timer);
        if (i >= 0) round.waiters.splice(i, 1);
        if (round.waiters.length === 0) this.sent.delete(round.ctx);
        reject(new TimeoutError("a linearizable read", timeoutMs));
      }, timeoutMs);
      round.waiters.push({ resolve, reject, timer });
    });
  }

  /** Takes the round to send now (its ctx goes to Raft.readIndex), if any. */
  takeNext(): string | null {
    const r = this.next;
    if (!r) return null;
    this.next = null;
    if (r.waiters.length === 0) return null;
    this.sent.set(r.ctx, r);
    return r.ctx;
  }

  /** Sending the round failed (no leader): its readers get the error now. */
  failRound(ctx: string, err: Error): void {
    const r = this.sent.get(ctx);
    if (!r) return;
    this.sent.delete(ctx);
    this.settle(r, err);
  }

  indexFor(ctx: string, index: number, applied: number): void {
    const r = this.sent.get(ctx);
    if (!r) return;
    r.index = index;
    this.onApplied(applied);
  }

  onApplied(applied: number): void {
    for (const [ctx, r] of this.sent) {
      if (r.index !== null && r.index <= applied) {
        this.sent.delete(ctx);
        this.settle(r, null);
      }
    }
  }

  failAll(err: Error): void {
    if (this.next) this.settle(this.next, err);
    this.next = null;
    for (const r of this.sent.values()) this.settle(r, err);
    this.sent.clear();
  }

  private settle(r: ReadRound, err: Error | null): void {
    for (const w of r.waiters) {
      clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve();
    }
    r.waiters.length = 0;
  }
}

/** Long polls waiting for the feed to pass an index. */
export class FeedWaiters {
  private readonly waiters = new Set<{ after: number; done: (ok: boolean) => void }>();

  constructor(private readonly sizeMax: number) {}

  wait(after: number, last: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (last > after) return Promise.resolve(true);
    if (signal?.aborted || timeoutMs <= 0 || this.waiters.size >= this.sizeMax) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w = {
        after,
        done: (ok: boolean) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          this.waiters.delete(w);
          resolve(ok);
        },
      };
      const onAbort = () => w.done(false);
      const timer = setTimeout(() => w.done(false), timeoutMs);
      signal?.addEventListener("abort", onAbort);
      this.waiters.add(w);
    });
  }

  onFeed(last: number): void {
    for (const w of [...this.waiters]) if (last > w.after) w.done(true);
  }

  failAll(): void {
    for (const w of [...this.waiters]) w.done(false);
  }
}

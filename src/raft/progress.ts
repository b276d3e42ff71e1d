/**
 * What a leader knows of each follower's log (thesis §3.5 nextIndex/matchIndex),
 * with the three flow-control states of etcd's raft:
 *  - probe: the follower's log is unknown; at most one append in flight,
 *    resent once per heartbeat until it answers;
 *  - replicate: appends are pipelined optimistically, at most
 *    `inflightMax` appends and `inflightBytesMax` bytes of entries in flight
 *    (so the memory a lagging follower costs the leader is bounded by bytes,
 *    whatever its lag);
 *  - snapshot: a snapshot is being sent; no appends until it is reported.
 */
import { assert } from "../util/assert.ts";

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A bounded window of the last indexes of appends in flight, and of their bytes. */
export class Inflights {
  private readonly ring: number[] = [];
  private readonly sizes: number[] = [];
  private start = 0;
  private byteCount = 0;

  constructor(
    readonly sizeMax: number,
    readonly bytesMax: number = Infinity,
  ) {
    assert(sizeMax > 0, () => `inflight window must be positive, got ${sizeMax}`);
    assert(bytesMax > 0, () => `inflight bytes must be positive, got ${bytesMax}`);
  }

  get bytes(): number {
    return this.byteCount;
  }

  get count(): number {
    return this.ring.length - this.start;
  }

  full(): boolean {
    return this.count >= this.sizeMax || this.byteCount >= this.bytesMax;
  }

  add(lastIndex: number, bytes = 0): void {
    assert(!this.full(), "inflights: add() on a full window");
    const last = this.ring[this.ring.length - 1];
    assert(this.count === 0 || last === undefined || lastIndex > last, () => `inflights out of order: ${lastIndex} after ${last}`);
    this.ring.push(lastIndex);
    this.sizes.push(bytes);
    this.byteCount += bytes;
  }

  /** Frees every append whose last index is <= `index` (they are acknowledged). */
  freeLE(index: number): void {
    while (this.start < this.ring.length && this.ring[this.start]! <= index) this.byteCount -= this.sizes[this.start++]!;
    if (this.start > 64 && this.start * 2 > this.ring.length) {
      this.ring.splice(0, this.start);
      this.sizes.splice(0, this.start);
      this.start = 0;
    }
  }

  reset(): void {
    this.ring.length = 0;
    this.sizes.length = 0;
    this.start = 0;
    this.byteCount = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /**
   * Sending is paused: in probe state an append is in flight; in replicate
   * state the inflight window is full. A heartbeat answer clears it, so lost
   * appends cannot stall a follower for good.
   */
  msgAppFlowPaused = false;
  /** The leader tick at which the newest acknowledged heartbeat was sent (read lease). */
  ackedSendTick = -1;
  /** In probe state: the leader tick at which the probe in flight was sent. */
  probeSentTick = -1;
  /** The leader tick of the last message from this follower. */
  lastContactTick = -1;
  readonly inflights: Inflights;

  constructor(opts: { next: number; inflightMax: number; inflightBytesMax?: number; isLearner: boolean }) {
    this.next = opts.next;
    this.inflights = new Inflights(opts.inflightMax, opts.inflightBytesMax);
    this.isLearner = opts.isLearner;
  }

  isLearner: boolean;

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records an append of `count` entries (`bytes` of them) just sent at leader tick `tick`. */
  sentEntries(count: number, bytes = 0, tick = -1): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next += count;
        this.inflights.add(this.next - 1, bytes);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === "probe") {
      this.msgAppFlowPaused = true;
      this.probeSentTick = tick;
    } else {
      assert(false, () => `sending entries in state ${this.state}`);
    }
  }

  /** An acknowledgement up to `n`. Returns whether match moved. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the append at `rejected`, with the follower's hint of where
   * the logs might match. Returns false for a stale rejection.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      // Rejections at or below match are stale: those entries were acked.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the newest probe's rejection counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
      case "replicate":
        return this.msgAppFlowPaused;
      case "snapshot":
        return true;
    }
  }
}

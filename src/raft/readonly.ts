/**
 * Pending ReadIndex requests on a leader (thesis §6.4): each records the
 * commit index when it arrived; it is safe to answer once a quorum has
 * acknowledged a heartbeat sent after it arrived, proving this node was still
 * the leader at that moment.
 */
import { assert } from "../util/assert.ts";
import type { NodeId } from "./types.ts";

export interface ReadIndexStatus {
  readonly index: number;
  readonly from: NodeId;
  readonly ctx: string;
  readonly acks: Set<NodeId>;
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  constructor(readonly pendingMax: number) {}

  get size(): number {
    return this.queue.length;
  }

  full(): boolean {
    return this.queue.length >= this.pendingMax;
  }

  has(ctx: string): boolean {
    return this.pending.has(ctx);
  }

  addRequest(opts: { index: number; from: NodeId; ctx: string }): void {
    if (this.pending.has(opts.ctx)) return;
    assert(!this.full(), () => `read-only queue full (${this.pendingMax})`);
    this.pending.set(opts.ctx, { ...opts, acks: new Set() });
    this.queue.push(opts.ctx);
  }

  /** Records an ack for ctx; returns the acks so far (undefined if ctx is unknown). */
  recvAck(from: NodeId, ctx: string): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(ctx);
    if (!rs) return undefined;
    rs.acks.add(from);
    return rs.acks;
  }

  /**
   * Removes and returns every request up to and including ctx: a quorum ack
   * of a later heartbeat also confirms leadership for the earlier requests.
   */
  advance(ctx: string): ReadIndexStatus[] {
    const i = this.queue.indexOf(ctx);
    if (i < 0) return [];
    const done = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    return done.map((c) => {
      const rs = this.pending.get(c)!;
      this.pending.delete(c);
      return rs;
    });
  }

  lastPendingCtx(): string {
    return this.queue[this.queue.length - 1] ?? "";
  }
}

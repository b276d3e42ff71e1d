/**
 * Reads on this node's copy. A linearizable read waits for a read round
 * (read index, thesis §6.4: the leader confirms it still leads, and this node
 * applies up to the commit index it had then); rounds batch every reader that
 * arrived meanwhile. A stale read asks how far behind this node may be:
 * applied and commit index, and how long since it heard from the leader.
 */
import { NONE, NotLeaderError, type RaftView, type ReadState } from "../raft/index.ts";
import type { RaftStore } from "../storage/store.ts";
import type { Staleness } from "./api.ts";
import { NoLeaderError, StoppedError } from "./errors.ts";
import type { ReadRounds } from "./waiters.ts";

export interface ReadsOptions {
  readonly rounds: ReadRounds;
  readonly store: () => Pick<RaftStore, "appliedIndex" | "hardState">;
  core(): { readonly view: RaftView } | undefined;
  stopping(): boolean;
  /** Why this node takes no part any more (removed), or null. */
  removedError(): Error | null;
  /** The stall detector, before the read is served. */
  checkStall(): void;
  /** A round is due: the next Ready sends it. */
  schedule(): void;
  readonly counters: { readRounds: number };
  readonly timeoutMs: number;
}

export class Reads {
  /** When the last message from the leader arrived (null: none yet). */
  private leaderContactAt: number | null = null;

  constructor(private readonly o: ReadsOptions) {}

  /** Linearizable read point: resolves once this node has applied the read index. */
  barrier(timeoutMs = this.o.timeoutMs): Promise<void> {
    const o = this.o;
    if (o.stopping()) return Promise.reject(new StoppedError());
    o.checkStall();
    const removed = o.removedError();
    if (removed) return Promise.reject(removed);
    const v = o.core()?.view;
    if (!v || v.leader === NONE) return Promise.reject(new NoLeaderError());
    const p = o.rounds.wait(timeoutMs);
    o.schedule();
    return p;
  }

  /** Before a Ready: the next read round, if readers wait. */
  startRound(raft: { readIndex(ctx: string): void }): void {
    const ctx = this.o.rounds.takeNext();
    if (!ctx) return;
    this.o.counters.readRounds++;
    try {
      raft.readIndex(ctx);
    } catch (e) {
      if (!(e instanceof NotLeaderError)) throw e;
      this.o.rounds.failRound(ctx, new NoLeaderError());
    }
  }

  /** After apply: rounds whose read index is known and applied settle. */
  afterApply(readStates: readonly ReadState[], applied: number): void {
    for (const rs of readStates) this.o.rounds.indexFor(rs.ctx, rs.index, applied);
    this.o.rounds.onApplied(applied);
  }

  /** A message from the leader arrived at `now`. */
  leaderContact(now: number): void {
    this.leaderContactAt = now;
  }

  /** ms since the last message from the leader (Infinity: none yet). */
  silentMs(now: number): number {
    return this.leaderContactAt === null ? Infinity : now - this.leaderContactAt;
  }

  /** The node stops: every reader waiting gets `err`. */
  failAll(err: Error): void {
    this.o.rounds.failAll(err);
  }

  staleness(now: number): Staleness {
    const v = this.o.core()?.view;
    const store = this.o.store();
    const commit = v?.commit ?? store.hardState().commit;
    const contact = v?.role === "leader" ? 0 : this.leaderContactAt === null ? null : Math.round(now - this.leaderContactAt);
    return { applied: store.appliedIndex(), commit, leaderContactMs: contact };
  }
}

/**
 * The write path above the core: a write proposed on a follower is forwarded
 * to the leader (once: the leader does not forward again); on the leader it
 * passes the pre-commit check (validators), the bounds on writes in flight,
 * and is proposed; its writer then waits for it to be saved ("accepted") or
 * applied, with the state machine's result.
 */
import { NONE, NotLeaderError, ProposalDroppedError, type RaftView } from "../raft/index.ts";
import type { ProposeOutcome, WaitMode } from "./api.ts";
import { BusyError, NoLeaderError, OverloadedError } from "./errors.ts";
import type { ProposalWaiters } from "./waiters.ts";

/** What the write path needs of the core. */
export interface WriteCore {
  readonly view: RaftView;
  propose(data: Uint8Array): { index: number; term: number };
}

export interface WritesOptions {
  readonly id: string;
  /** The core, if this node takes writes now; else throws why not (stopped, disk full, removed, not joined). */
  writable(): WriteCore;
  /** Forwards a write to the leader; resolves with its outcome there. */
  forward(lead: string, bytes: Uint8Array, wait: WaitMode, timeoutMs: number): Promise<ProposeOutcome>;
  /** The pre-commit check (CairnNodeOptions.beforePropose). */
  readonly beforePropose?: (bytes: Uint8Array) => Promise<void> | null;
  readonly proposals: ProposalWaiters;
  /** Writers waiting for their entry to be saved (the driver's). */
  readonly saved: {
    waitPersisted(at: { index: number; term: number }): Promise<void>;
    persistWaiting(): number;
    readonly persistWaitersMax: number;
  };
  /** Writes in flight on this leader, at most. */
  readonly inFlightMax: number;
  /** The core was stepped: a Ready is due. */
  schedule(): void;
  readonly counters: { proposals: number; forwarded: number };
}

export interface WriteRequest {
  readonly bytes: Uint8Array;
  readonly wait: WaitMode;
  readonly timeoutMs: number;
  /** False for a write forwarded here: it is not forwarded again. */
  readonly mayForward: boolean;
}

export class Writes {
  constructor(private readonly o: WritesOptions) {}

  async propose(w: WriteRequest): Promise<ProposeOutcome> {
    const o = this.o;
    let raft = o.writable();
    if (raft.view.role !== "leader") {
      const lead = raft.view.leader;
      if (!w.mayForward || lead === NONE) throw new NoLeaderError();
      o.counters.forwarded++;
      return o.forward(lead, w.bytes, w.wait, w.timeoutMs);
    }
    const check = o.beforePropose?.(w.bytes) ?? null;
    if (check !== null) {
      await check;
      raft = o.writable();
      if (raft.view.role !== "leader") throw new NoLeaderError(`${o.id} lost the leadership while the write was being validated`);
    }
    if (o.proposals.full() || o.saved.persistWaiting() >= o.saved.persistWaitersMax) throw new OverloadedError(o.inFlightMax);
    const at = this.proposeTo(raft, w.bytes);
    o.counters.proposals++;
    o.schedule();
    if (w.wait === "accepted") {
      await o.saved.waitPersisted(at);
      return { kind: "accepted", raftIndex: at.index, term: at.term };
    }
    const result = await o.proposals.wait(at, w.timeoutMs);
    return { kind: "applied", result: result as never };
  }

  private proposeTo(raft: WriteCore, bytes: Uint8Array): { index: number; term: number } {
    try {
      return raft.propose(bytes);
    } catch (e) {
      if (e instanceof NotLeaderError) throw new NoLeaderError();
      if (e instanceof ProposalDroppedError) throw new BusyError(e.message);
      throw e;
    }
  }
}

/**
 * What a Ready settles around the loop (the driver's hooks): before it, the
 * next read round; after apply, proposal and read waiters and feed long
 * polls; after advance, the core's events (removal, cluster adoption,
 * configurations) and leader changes.
 */
import { NONE, type RaftView, type Ready } from "../raft/index.ts";
import type { RaftStore } from "../storage/store.ts";
import type { Logger } from "../util/log.ts";
import { NoLeaderError } from "./errors.ts";
import type { Handover } from "./handover.ts";
import type { NodeCounters } from "./metrics.ts";
import type { PeerCalls } from "./peer.ts";
import type { Removal } from "./removal.ts";
import type { Snapshots } from "./snapshots.ts";
import type { Reads } from "./reads.ts";
import type { ProposalWaiters } from "./waiters.ts";

export interface ReadyHooksOptions {
  readonly id: string;
  readonly log: Logger;
  readonly store: Pick<RaftStore, "appliedIndex">;
  readonly proposals: ProposalWaiters;
  readonly reads: Pick<Reads, "startRound" | "afterApply">;
  readonly counters: NodeCounters;
  /** Changes were applied to the feed: wake its long polls. */
  feedMoved(): void;
  /** Requests forwarded to a former leader fail. */
  readonly calls: Pick<PeerCalls, "failTo">;
  /** Checkpoint transfers stop when this node stops leading. */
  readonly snapshots: Pick<Snapshots, "cancelAll">;
  /** Leadership transfers learn that the leader changed. */
  readonly handover: Pick<Handover, "onLeaderChange">;
  readonly removal: Pick<Removal, "mark" | "onConfApplied">;
  /** A leader is known: this node no longer waits to join. */
  onLeaderKnown(): void;
  /** This node learned its cluster: the data directory records the cluster's name. */
  recordClusterName(): void;
  /** A configuration was applied: membership converges, admission is checked again. */
  confApplied(): void;
}

export class ReadyHooks {
  /** The leader of the last Ready: requests forwarded to it fail when it changes. */
  private prevLead: string = NONE;

  constructor(private readonly o: ReadyHooksOptions) {}

  /** Before a Ready: the next read round, if readers wait. */
  startReadRound(raft: { readIndex(ctx: string): void }): void {
    this.o.reads.startRound(raft);
  }

  /** After apply: writers, readers and feed long polls learn what was applied. */
  afterApply(rd: Ready, results: Map<number, unknown>): void {
    let feedMoved = false;
    for (const e of rd.committedEntries) {
      this.o.proposals.applied(e.index, e.term, results.get(e.index));
      if (results.has(e.index)) feedMoved = true;
    }
    this.o.counters.applied += rd.committedEntries.length;
    this.o.reads.afterApply(rd.readStates, this.o.store.appliedIndex());
    if (feedMoved) this.o.feedMoved();
  }

  /** After advance: the Ready's events, and a leader change. */
  afterReady(raft: RaftView, rd: Ready): void {
    for (const ev of rd.events) this.onEvent(ev, raft);
    if (!rd.softState) return;
    this.o.counters.leaderChanges++;
    const lead = rd.softState.leader;
    this.o.log.info(lead ? `leader is ${lead}${lead === this.o.id ? " (this node)" : ""}` : "no leader", { term: raft.term, role: rd.softState.role, index: raft.lastIndex });
    if (lead !== NONE) this.o.onLeaderKnown();
    // Requests forwarded to the former leader may never be answered: fail them now.
    if (this.prevLead !== NONE && this.prevLead !== lead) {
      this.o.calls.failTo(this.prevLead, new NoLeaderError("the leader changed while the request was in flight; its outcome is unknown: retry with an Idempotency-Key"));
    }
    this.prevLead = lead;
    if (lead !== this.o.id) this.o.snapshots.cancelAll("this node is no longer the leader");
    this.o.handover.onLeaderChange();
  }

  private onEvent(ev: Ready["events"][number], raft: RaftView): void {
    const f = { term: raft.term };
    const log = this.o.log;
    switch (ev.kind) {
      case "removed":
        this.o.removal.mark(ev.index, `it applied the configuration at index ${ev.index}, which does not list it`);
        return;
      case "clusterMismatch":
        log.warn(`refused a message from ${ev.from} of cluster ${ev.theirs}: this node belongs to cluster ${ev.ours}`, f);
        return;
      case "clusterAdopted":
        this.o.recordClusterName();
        log.info(`joined cluster ${ev.clusterId} (first contact from ${ev.from})`, f);
        return;
      case "confApplied": {
        const c = ev.conf;
        log.info(`configuration at index ${ev.index}: voters ${c.voters.join(",")}${c.votersOutgoing.length ? ` (joint with ${c.votersOutgoing.join(",")})` : ""}${c.learners.length ? `, learners ${c.learners.join(",")}` : ""}`, { ...f, index: ev.index });
        this.o.confApplied();
        this.o.removal.onConfApplied(ev.index, c, raft.term);
        return;
      }
      default:
        log.info(`raft: ${ev.kind}`, { ...f, ...ev });
    }
  }
}

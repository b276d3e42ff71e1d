/**
 * Whether this node was removed from the cluster, and how it learns it: by
 * applying a configuration without it, from a peer's answer to the removal
 * check (membership.ts RemovalCheck), or from a peer that refused it as a
 * non-member and said why. A removed node takes no part any more, and its
 * data directory is marked so it never rejoins by accident; a later
 * configuration that lists it again (a wiped node re-added under the same id,
 * its history replaying) clears the mark.
 */
import { allMembers, type ConfState, type RaftView } from "../raft/index.ts";
import type { RaftStore } from "../storage/store.ts";
import type { RefusedByInfo } from "../transport/context.ts";
import type { Logger } from "../util/log.ts";
import { DiskFullError, NoLeaderError } from "./errors.ts";
import { RemovalCheck, removalProof, type MemberView, type ProbeReply } from "./membership.ts";

export interface RemovalOptions {
  readonly id: string;
  readonly dataDir: string;
  readonly log: Logger;
  store(): Pick<RaftStore, "path" | "clusterId" | "lastIndex" | "appliedIndex" | "setRemovedAt" | "removedAt" | "clearRemovedAt">;
  core(): { readonly view: RaftView } | undefined;
  /** The node stops: it is out anyway, nothing more is recorded. */
  stopping(): boolean;
  /** ms since the last message from the leader (Infinity: none yet). */
  silentMs(): number;
  /** Asks a peer what its applied configuration is (the probe). */
  ask(peer: string): Promise<unknown>;
  /** Runs a callback's work; what it throws is fatal. */
  guarded(fn: () => void): void;
  /** A follower silent this long asks its peers whether it was removed. */
  readonly checkEveryMs: number;
}

export class Removal {
  private isRemoved = false;
  private readonly check: RemovalCheck;

  constructor(private readonly o: RemovalOptions) {
    this.check = new RemovalCheck({
      everyMs: o.checkEveryMs,
      ask: (peer) => o.ask(peer),
      view: () => this.memberView(),
      // Called in a promise's then(), whose catch() would swallow a database error of mark(): guarded.
      onRemoved: (e) => o.guarded(() => this.mark(e.applied, `learned from ${e.from}: its configuration, applied up to index ${e.applied}, does not list this node`)),
    });
  }

  get removed(): boolean {
    return this.isRemoved;
  }

  /** What a request to a removed node is refused with (null: this node takes part). */
  error(): NoLeaderError | null {
    return this.isRemoved ? new NoLeaderError("this node was removed from the cluster and no longer takes part: send requests to a member of the cluster file") : null;
  }

  /** On a tick: a follower cut off from the leader asks whether it was removed. */
  tick(now: number): void {
    this.check.tick(now);
  }

  private memberView(): MemberView {
    const v = this.o.core()?.view;
    const store = this.o.store();
    return {
      self: this.o.id,
      clusterId: store.clusterId(),
      members: v ? allMembers(v.conf) : [],
      leader: v?.role === "leader",
      removed: this.isRemoved || this.o.stopping(),
      silentMs: this.o.silentMs(),
      lastIndex: store.lastIndex(),
    };
  }

  /**
   * What this node answers a probe, and tells a peer it refuses as a
   * non-member: whether it is empty (founding), and its applied
   * configuration (a removed node learns from it that it is out).
   */
  probeAnswer(): ProbeReply {
    const store = this.o.store();
    const v = this.o.core()?.view;
    const empty = store.clusterId() === null && store.lastIndex() === 0;
    return { empty, clusterId: store.clusterId(), applied: store.appliedIndex(), members: v ? allMembers(v.conf) : [] };
  }

  /** A peer refused this node as a non-member and said what its configuration is: that may prove this node was removed. */
  onRefusedBy(e: RefusedByInfo): void {
    const v = this.memberView();
    if (v.leader || !v.members.includes(this.o.id)) return;
    const applied = removalProof(e.info, v);
    if (applied !== null) this.mark(applied, `learned from ${e.peer}, which refused this node: its configuration, applied up to index ${applied}, does not list this node`);
  }

  /** This node is out of the cluster (a configuration at `index` does not list it): it stops taking part, and its data is marked. */
  mark(index: number, how: string): void {
    if (this.isRemoved || this.o.stopping()) return;
    this.isRemoved = true;
    const store = this.o.store();
    try {
      store.setRemovedAt(index);
    } catch (e) {
      if (!(e instanceof DiskFullError)) throw e;
      this.o.log.error(`could not record the removal in ${store.path}: the disk is full; this process still takes no part`);
    }
    const v = this.o.core()?.view;
    const committed = v?.commit ?? 0;
    if (committed > index) how += `; catching up to index ${committed}, a later configuration may add it back`;
    this.o.log.warn(
      `this node was removed from the cluster (${how}): it no longer takes part; its data stays in ${this.o.dataDir} ` +
        `and will not be used to rejoin (to add this node back, list it in the cluster file and start it with an empty data directory)`,
      { term: v?.term },
    );
  }

  /** A configuration was applied at `index`: if it lists this node past its removal, the removal was history. */
  onConfApplied(index: number, conf: ConfState, term: number): void {
    const store = this.o.store();
    if (!this.isRemoved || index <= (store.removedAt() ?? 0) || !allMembers(conf).includes(this.o.id)) return;
    // Added back while its history replays (a wiped node re-added under the same id).
    this.isRemoved = false;
    store.clearRemovedAt();
    this.o.log.info(`this node is a member again (configuration at index ${index}): the earlier removal was history`, { term, index });
  }
}

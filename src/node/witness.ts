/**
 * The node side of a witness voter (cluster file `"role": "witness"`; the
 * protocol rule is in src/raft/witness.ts, the operator's view in the README,
 * "Witness"). A witness keeps the Raft log and hard state like any voter
 * (fsynced), but:
 *  - no state machine: committed entries only move the applied index
 *    (WITNESS_FSM), so no feed, no keys, no checkpoints;
 *  - its log is compacted on ticks up to Raft.witnessCompactIndex(): what
 *    every data voter already holds, so its disk is the entries a lagging
 *    data node still needs plus a small constant;
 *  - a checkpoint a data leader offers it is never downloaded: the witness
 *    takes only its position (the snapshot message) and tells the sender the
 *    transfer is done;
 *  - its HTTP API refuses client data requests (src/api/witness.ts).
 * A data directory remembers which it was made for: a witness's directory
 * never serves as a data node's (it has no data), nor the other way round.
 */
import type { ClusterConfig } from "../discovery/load.ts";
import type { Message, RaftView, Ready } from "../raft/index.ts";
import type { Fsm } from "../statemachine/fsm.ts";
import type { RaftStore } from "../storage/store.ts";
import type { SnapPayload } from "../checkpoint/transfer.ts";
import type { Logger } from "../util/log.ts";

/** Compact once at least this many entries are safe to drop (each compaction is one small transaction). */
export const WITNESS_COMPACT_ENTRIES_MIN = 256;
/** Above this many entries held, /status says which data voter keeps the witness from compacting. */
export const WITNESS_HELD_ENTRIES_WARN = 100_000;

/** A state machine with nothing in it: the Applier only records the applied index (and configuration). */
export const WITNESS_FSM: Fsm = {
  init: () => undefined,
  apply: () => null,
};

export function witnessIds(config: ClusterConfig): string[] {
  return config.nodes.filter((n) => n.role === "witness").map((n) => n.id);
}

export function isWitnessIn(config: ClusterConfig, id: string): boolean {
  return config.nodes.some((n) => n.id === id && n.role === "witness");
}

/** The data nodes of the file, for a witness's refusals ("ask one of these"). */
export function dataNodes(config: ClusterConfig): { id: string; api: string }[] {
  return config.nodes.filter((n) => n.role !== "witness").map((n) => ({ id: n.id, api: n.api }));
}

export class DataDirRoleError extends Error {
  override name = "DataDirRoleError";
}

/**
 * Records what the data directory is for on first use, and refuses a
 * directory made for the other kind: a witness's directory has an applied
 * index but no data, so a data node over it would serve an empty store.
 */
export function checkDataDirRole(store: RaftStore, witness: boolean): void {
  const want = witness ? "witness" : "data";
  const db = store.db;
  const row = db.prepare("SELECT value FROM meta WHERE key = 'node_kind'").get();
  const have = row?.value;
  if (have === undefined || have === null) {
    db.prepare("INSERT INTO meta (key, value) VALUES ('node_kind', ?)").run(want);
    return;
  }
  if (have !== want) {
    throw new DataDirRoleError(
      `the data directory ${store.path} belongs to a ${String(have)} node, but the cluster file makes this node a ${want} node: ` +
        `give it an empty data directory (it then joins as a ${want} node), or put its role back`,
    );
  }
}

export class WitnessRole {
  private compactions = 0;

  constructor(private readonly o: { readonly store: RaftStore; readonly log: Logger }) {}

  /** On ticks: drops the log prefix every data voter holds (rule 1 of src/raft/witness.ts). */
  compact(raft: Pick<RaftView, "witnessCompactIndex">): void {
    const store = this.o.store;
    const to = Math.min(raft.witnessCompactIndex(), store.appliedIndex(), store.lastIndex());
    const from = store.snapshotMeta().index;
    if (to - from < WITNESS_COMPACT_ENTRIES_MIN) return;
    // The snapshot record is only a position here (there is no data behind it): the core never sends it.
    store.createSnapshot(to, store.confState());
    store.compact(to);
    if (++this.compactions % 100 === 1) this.o.log.info(`witness: log compacted to index ${to} (every data voter holds it)`, { index: to });
  }

  /** A /status problem while the witness holds many entries because a data voter lags (its disk grows meanwhile). */
  problem(raft: Pick<RaftView, "witnessCompactIndex">): string | null {
    const held = this.o.store.lastIndex() - this.o.store.firstIndex() + 1;
    if (held <= WITNESS_HELD_ENTRIES_WARN) return null;
    return (
      `the witness holds ${held} log entries (from index ${this.o.store.firstIndex()}): a data voter has not got them yet (compaction point ${raft.witnessCompactIndex()}), ` +
      `and they are kept until every data voter has them; bring the lagging data node back, or remove it from the cluster file`
    );
  }

  /**
   * A data leader offers a checkpoint: the witness takes its position only.
   * Returns the snapshot message for the core (or null for other payloads).
   */
  takeOffer(from: string, p: SnapPayload, send: (to: string, p: SnapPayload) => boolean): Message | null {
    if (p.t !== "snapOffer") return null;
    send(from, { t: "snapDone", xfer: p.xfer, ok: true, reason: "" });
    this.o.log.info(`witness: took the position of checkpoint ${p.manifest.id} from ${from} without its data`, { index: p.msg.snapshot?.index });
    return p.msg;
  }

  /** Persists a Ready with a snapshot: the log reset to its position, no state machine data. */
  persistSnapshot(rd: Ready): void {
    this.o.store.persist({ snapshot: rd.snapshot!, hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId });
  }
}

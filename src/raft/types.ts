/**
 * The data types of the Raft core: log entries, messages, persistent state and
 * the Ready handed to the driver. Everything here is plain data so that it can
 * be CBOR-encoded for the wire and for disk without custom codecs.
 *
 * Numbers: terms and indexes are JS numbers; they stay exact up to 2^53, which
 * is ~285 years at a million entries a second.
 */

export type NodeId = string;

/** "No node": no vote cast, no leader known. */
export const NONE: NodeId = "";

export type EntryKind = "normal" | "conf";

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  /** Application payload. An empty normal entry is the leader's no-op. */
  readonly data: Uint8Array;
  /** Present exactly when kind === "conf". */
  readonly conf?: ConfChange;
}

export type ConfChangeType = "addVoter" | "addLearner" | "remove";

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

/**
 * Membership changes always go through a joint configuration (Raft §6, thesis
 * §4.3): "enter" applies the changes to the incoming voter set while the old
 * set stays as the outgoing one, "leave" drops the outgoing set. "init" sets
 * the configuration of a new cluster and is only valid on an empty one.
 */
export interface ConfChange {
  readonly op: "init" | "enter" | "leave";
  readonly changes: readonly ConfChangeSingle[];
}

/** A configuration as it is persisted: sorted id lists. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  /** Non-empty only in a joint configuration: the old voter set. */
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Voters of the outgoing set that become learners when the joint state is left. */
  readonly learnersNext: readonly NodeId[];
}

export const EMPTY_CONF: ConfState = Object.freeze({
  voters: [],
  votersOutgoing: [],
  learners: [],
  learnersNext: [],
});

export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

/** What the core knows of a snapshot: the data itself lives outside it. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

export type MessageType =
  | "app" // append entries (also probes)
  | "appResp"
  | "vote"
  | "voteResp"
  | "preVote"
  | "preVoteResp"
  | "heartbeat"
  | "heartbeatResp"
  | "snap" // install snapshot: metadata only, the bytes travel beside it
  | "timeoutNow" // leadership transfer: start an election at once
  | "readIndex" // a follower asks the leader for a read index
  | "readIndexResp"
  | "transferLeader"; // a follower forwards a transfer request

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  /** 0 for readIndex and transferLeader forwards, which bypass term checks. */
  readonly term: number;
  /** Every message carries the cluster ID; a mismatch is dropped and reported. */
  readonly cluster: string;
  /**
   * app: index of the entry before `entries`; appResp: last index matched (or
   * the rejected index); vote: candidate's last index; heartbeat(+Resp): the
   * leader's tick at sending, used for the read lease; readIndexResp: the read index.
   */
  readonly index: number;
  /** app: term at `index`; vote: candidate's last term; appResp reject: hint term. */
  readonly logTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  /** vote answers: term of the entry at `commit`, so a candidate holding it may learn the commit index. */
  readonly commitTerm: number;
  readonly reject: boolean;
  /** appResp reject: the follower's hint of where the logs may match. */
  readonly rejectHint: number;
  /** Read index request id, campaign kind, or transfer target. */
  readonly context: string;
  readonly snapshot?: SnapshotMeta;
  /**
   * app/heartbeat to a witness only: the smallest match of the data voters
   * (not witnesses) in the leader's current term; the witness compacts its
   * log no further (src/raft/witness.ts).
   */
  readonly dataMatch?: number;
}

/** The fields a message carries when it has nothing to say in them. */
export const MESSAGE_DEFAULTS = Object.freeze({
  index: 0,
  logTerm: 0,
  entries: Object.freeze([]) as readonly Entry[],
  commit: 0,
  commitTerm: 0,
  reject: false,
  rejectHint: 0,
  context: "",
});

/** vote/preVote context that lets a transferee skip leases (thesis §3.10). */
export const CAMPAIGN_TRANSFER = "transfer";

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

export interface ReadState {
  /** Linearizable reads with this context may be served once applied >= index. */
  readonly index: number;
  readonly ctx: string;
}

/** Things the driver should log or count. Never needed for correctness. */
export type RaftEvent =
  | { readonly kind: "clusterMismatch"; readonly from: NodeId; readonly theirs: string; readonly ours: string }
  | { readonly kind: "clusterAdopted"; readonly clusterId: string; readonly from: NodeId }
  | { readonly kind: "confApplied"; readonly index: number; readonly conf: ConfState }
  | { readonly kind: "confRejected"; readonly index: number; readonly reason: string }
  | { readonly kind: "removed"; readonly index: number }
  | { readonly kind: "stepDown"; readonly reason: string }
  | { readonly kind: "dropped"; readonly what: string; readonly reason: string };

/**
 * One batch of work for the driver. Contract (see Raft.advance):
 *  1. install `snapshot` (if any), append `entries` (truncating any suffix that
 *     conflicts), persist `hardState`, `confState` and `clusterId` durably;
 *  2. only then send `messages`;
 *  3. apply `committedEntries` in order, storing the applied index and
 *     `confState` in the same transaction as the changes;
 *  4. call advance(ready).
 */
export interface Ready {
  readonly softState?: SoftState;
  readonly hardState?: HardState;
  readonly snapshot?: SnapshotMeta;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  /** The configuration after `committedEntries`, when they changed it. */
  readonly confState?: ConfState;
  /** A cluster ID this node just learned and must persist. */
  readonly clusterId?: string;
  readonly events: readonly RaftEvent[];
}

export function entryBytes(e: Entry): number {
  // A fixed overhead for index/term/kind keeps empty entries from being free.
  return e.data.byteLength + (e.conf ? 16 * (e.conf.changes.length + 1) : 0) + 24;
}

/**
 * What the HTTP API (and embedders) may ask of a running node. CairnNode
 * implements it; the API layer depends only on this.
 */
import type { Manifest } from "../checkpoint/manifest.ts";
import type { Command, CommandResult, Replayed } from "../statemachine/commands.ts";
import type { CairnFsm } from "../statemachine/cairn.ts";

export type WaitMode = "applied" | "accepted";

export type ProposeOutcome =
  /** Committed and applied; the state machine's result. */
  | { readonly kind: "applied"; readonly result: Replayed<CommandResult> }
  /** ?wait=none: the leader appended it to its log; not yet committed. */
  | { readonly kind: "accepted"; readonly raftIndex: number; readonly term: number };

export interface MemberStatus {
  readonly id: string;
  readonly role: "voter" | "learner" | "witness";
  readonly peer: string | null;
  readonly api: string | null;
  /** Leader's view; null on other nodes. */
  readonly match: number | null;
  readonly lag: number | null;
  readonly lastContactMs: number | null;
}

export interface NodeStatus {
  readonly id: string;
  readonly role: "leader" | "follower" | "candidate" | "preCandidate" | "learner" | "joining" | "removed" | "stopped";
  readonly term: number;
  readonly leader: { readonly id: string; readonly api: string | null } | null;
  readonly clusterId: string | null;
  readonly cluster: string;
  readonly index: {
    readonly first: number;
    readonly last: number;
    readonly commit: number;
    readonly applied: number;
    readonly checkpoint: number;
  };
  readonly feed: { readonly first: number; readonly last: number };
  readonly members: readonly MemberStatus[];
  /** A membership change is half done (joint configuration): both old and new voters must agree. */
  readonly joint: boolean;
  readonly version: string;
  readonly formatVersion: number;
  /** Why the node is not serving writes, if it is not (waiting to join, disk full, ...). */
  readonly problems: readonly string[];
}

export interface Staleness {
  readonly applied: number;
  readonly commit: number;
  /** ms since this node last heard from a leader; 0 on the leader; null if never. */
  readonly leaderContactMs: number | null;
}

export interface NodeApi {
  readonly id: string;
  /** Queries on this node's local copy. Call readBarrier() first for a linearizable read. */
  readonly fsm: CairnFsm;
  /**
   * Validates (InvalidCommandError: 400/413), then proposes on the leader
   * (forwarded over the peer transport from a follower). Throws NoLeaderError,
   * TimeoutError, DiskFullError, ProposalLostError (all in node/errors.ts).
   */
  propose(cmd: Command, opts?: { wait?: WaitMode; timeoutMs?: number }): Promise<ProposeOutcome>;
  /** Linearizable read point (read index, thesis §6.4): resolves once this node has applied it. */
  readBarrier(opts?: { timeoutMs?: number }): Promise<void>;
  staleness(): Staleness;
  /** Resolves true once the feed's last index exceeds `after`, false after timeoutMs or on abort. */
  waitForFeed(after: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  status(): NodeStatus;
  /** Has a leader and has applied what it knew to be committed. */
  readiness(): { readonly ready: boolean; readonly reason: string };
  /** Hands leadership to `to` (or the most up-to-date voter); resolves with the new leader. */
  transferLeader(opts?: { to?: string; timeoutMs?: number }): Promise<{ readonly from: string; readonly to: string }>;
  /** Prometheus text exposition of the node's metrics. */
  metricsText(): string;
  /** This node's complete checkpoints, newest first. */
  checkpoints(): Manifest[];
  /** A checkpoint's file, or null if there is no such checkpoint here. */
  checkpointFile(id: string): { readonly manifest: Manifest; readonly path: string } | null;
  /** The same, after checking the file against its manifest's SHA-256 (ChecksumMismatchError if damaged). */
  verifiedCheckpointFile?(id: string): Promise<{ readonly manifest: Manifest; readonly path: string } | null>;
  /** Builds a checkpoint of the applied state now (null when nothing was ever applied). */
  createCheckpoint(): Promise<Manifest | null>;
  /** The error that stopped the node (a database error, crash-only), or null while it serves. */
  failed?(): Error | null;
  /** A request hit an error the node cannot go on after (a database error): stop it. */
  fatal?(err: unknown): void;
  /** On a witness (no state machine, src/node/witness.ts): the data nodes to ask instead; null or absent on a data node. */
  witness?(): { readonly dataNodes: readonly { readonly id: string; readonly api: string }[] } | null;
}

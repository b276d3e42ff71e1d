/**
 * Expected conditions of the core, as typed errors. Callers check them with
 * `instanceof`, never by message text.
 */
import type { NodeId } from "./types.ts";

/** The requested index is below the first index still in the log (compacted). */
export class CompactedError extends Error {
  override name = "CompactedError";
  constructor(readonly index: number, readonly firstIndex: number) {
    super(`log index ${index} is compacted: the log starts at ${firstIndex}; send a snapshot instead`);
  }
}

/** The requested index is above the last index in the log. */
export class UnavailableError extends Error {
  override name = "UnavailableError";
  constructor(readonly index: number, readonly lastIndex: number) {
    super(`log index ${index} is not available: the log ends at ${lastIndex}`);
  }
}

/** A proposal or request that only a leader can take reached a non-leader. */
export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  constructor(readonly leader: NodeId) {
    super(leader ? `this node is not the leader; the leader is ${leader}` : "there is no leader right now; retry shortly");
  }
}

/** A proposal was refused: transfer under way, too many uncommitted bytes, etc. */
export class ProposalDroppedError extends Error {
  override name = "ProposalDroppedError";
  constructor(readonly reason: string) {
    super(`proposal dropped: ${reason}`);
  }
}

/** A configuration change was refused before it reached the log. */
export class ConfChangeError extends Error {
  override name = "ConfChangeError";
  constructor(readonly reason: string) {
    super(`configuration change refused: ${reason}`);
  }
}

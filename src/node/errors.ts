/**
 * Expected conditions of a running node, as typed errors, each with a stable
 * code (the API's `error.code`). Checked with instanceof. Which HTTP status
 * and Retry-After each one is answered with is the API's choice
 * (src/api/errors.ts), not the node's.
 */
import { DiskFullError } from "../platform/sqlite.ts";

/**
 * The one full-disk error: SQLite's SQLITE_FULL as the storage layer throws
 * it, and what the node refuses writes with while its disk is full.
 */
export { DiskFullError };

export class NodeError extends Error {
  override name = "NodeError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** No leader is known (election under way, or no quorum). */
export class NoLeaderError extends NodeError {
  override name = "NoLeaderError";
  constructor(detail = "no leader is known right now (an election may be under way, or a quorum is down)") {
    super("no_leader", `${detail}; retry shortly`);
  }
}

export class TimeoutError extends NodeError {
  override name = "TimeoutError";
  constructor(what: string, ms: number) {
    super("timeout", `${what} did not finish within ${ms} ms; the cluster may have no quorum; retry (with an Idempotency-Key for writes)`);
  }
}

/** The proposal's log slot went to another entry (leadership changed): it was not applied. */
export class ProposalLostError extends NodeError {
  override name = "ProposalLostError";
  constructor(index: number) {
    super("proposal_lost", `the write at log index ${index} was replaced after a leader change and not applied; retry`);
  }
}

/** Too many writes in flight on this leader: the bound on waiting writers is reached. */
export class OverloadedError extends NodeError {
  override name = "OverloadedError";
  constructor(readonly inFlightMax: number) {
    super("overloaded", `more than ${inFlightMax} writes in flight; retry shortly`);
  }
}

/** The core dropped the proposal (a leadership transfer is under way, or its uncommitted log is full). */
export class BusyError extends NodeError {
  override name = "BusyError";
  constructor(detail: string) {
    super("busy", detail);
  }
}

/** The node is shutting down or not started. */
export class StoppedError extends NodeError {
  override name = "StoppedError";
  constructor() {
    super("stopped", "this node is stopping; use another node");
  }
}

/** A request the node refuses as given (unknown transfer target...). */
export class BadRequestError extends NodeError {
  override name = "BadRequestError";
  constructor(message: string) {
    super("bad_request", message);
  }
}

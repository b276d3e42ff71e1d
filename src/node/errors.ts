/**
 * Expected conditions of a running node, as typed errors with the HTTP
 * status the API answers them with. Checked with instanceof.
 */
export class NodeError extends Error {
  override name = "NodeError";
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly retryAfterSec?: number,
  ) {
    super(message);
  }
}

/** No leader is known (election under way, or no quorum). */
export class NoLeaderError extends NodeError {
  override name = "NoLeaderError";
  constructor(detail = "no leader is known right now (an election may be under way, or a quorum is down)") {
    super("no_leader", 503, `${detail}; retry shortly`, 1);
  }
}

export class TimeoutError extends NodeError {
  override name = "TimeoutError";
  constructor(what: string, ms: number) {
    super("timeout", 503, `${what} did not finish within ${ms} ms; the cluster may have no quorum; retry (with an Idempotency-Key for writes)`, 1);
  }
}

/** The proposal's log slot went to another entry (leadership changed): it was not applied. */
export class ProposalLostError extends NodeError {
  override name = "ProposalLostError";
  constructor(index: number) {
    super("proposal_lost", 503, `the write at log index ${index} was replaced after a leader change and not applied; retry`, 0);
  }
}

/** The disk is full: writes stop until space returns; reads go on. */
export class DiskFullError extends NodeError {
  override name = "DiskFullError";
  constructor(path: string) {
    super("disk_full", 507, `the disk holding ${path} is full: writes are refused until space is freed; reads continue and writes resume by themselves`, 5);
  }
}

/** Too many writes in flight on this leader: the bound on waiting writers is reached. */
export class OverloadedError extends NodeError {
  override name = "OverloadedError";
  constructor(readonly inFlightMax: number) {
    super("overloaded", 503, `more than ${inFlightMax} writes in flight; retry shortly`, 1);
  }
}

/** The core dropped the proposal (a leadership transfer is under way, or its uncommitted log is full). */
export class BusyError extends NodeError {
  override name = "BusyError";
  constructor(detail: string) {
    super("busy", 503, detail, 1);
  }
}

/** The node is shutting down or not started. */
export class StoppedError extends NodeError {
  override name = "StoppedError";
  constructor() {
    super("stopped", 503, "this node is stopping; use another node", 1);
  }
}

/** A request the node refuses as given (unknown transfer target...). */
export class BadRequestError extends NodeError {
  override name = "BadRequestError";
  constructor(message: string) {
    super("bad_request", 400, message);
  }
}

/**
 * What every route handler shares: the node, the resolved options, the
 * limit on waiting requests, and the helpers that put a deadline on every
 * wait and pick the read point of a request.
 */
import type { NodeApi, Staleness } from "../node/api.ts";
import type { Authenticator } from "./auth.ts";
import { TimeoutError } from "../node/errors.ts";
import type { Logger } from "../util/log.ts";
import { ApiError } from "./errors.ts";
import type { Consistency } from "./request.ts";

/** The newest checkpoint, for the 410 answer of a reader below the retained feed. */
export interface CheckpointRef {
  readonly id: string;
  /** The feed index the checkpoint holds the state at: resume the feed after it. */
  readonly index: number;
  readonly url?: string;
}

/** Hook for src/checkpoint/: until it exists, 410 answers carry "checkpoint": null. */
export interface CheckpointProvider {
  latest(): CheckpointRef | null;
}

export interface ApiLimits {
  readonly bodyBytesMax: number;
  /** Deadline of a write (propose) and of a read barrier / leader transfer. */
  readonly writeTimeoutMs: number;
  readonly readTimeoutMs: number;
  readonly transferTimeoutMs: number;
  /** `block` is capped at this. */
  readonly blockSecMax: number;
  /** Long polls and streams waiting at once; more get 503. */
  readonly waitsMax: number;
  readonly sseKeepaliveMs: number;
  /** An SSE client that reads nothing for this long while data waits is dropped. */
  readonly sseStallMs: number;
}

export interface ApiContext {
  readonly node: NodeApi;
  readonly log: Logger;
  readonly limits: ApiLimits;
  readonly version: string;
  readonly checkpoints: CheckpointProvider | null;
  /** Aborted when the server shuts down: long polls and streams end. */
  readonly shutdown: AbortSignal;
  readonly waits: Slots;
  /** Null: no authentication (--no-auth). */
  readonly auth: Authenticator | null;
}

/** A counting limit. */
export class Slots {
  private used = 0;
  constructor(readonly max: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes a slot or throws 503. Release exactly once. */
  acquire(what: string): () => void {
    if (this.used >= this.max) {
      throw new ApiError(503, "too_many_waiting", `${this.max} ${what} are already waiting on this node; retry later or use another node`, { retryAfterSec: 1 });
    }
    this.used++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used--;
    };
  }
}

/** Extra time past a node call's own timeout before the API gives up on it. */
const GRACE_MS = 1000;

/**
 * Waits for `p` at most ms + GRACE_MS: the node calls take their own
 * timeout, and this is the guard that the request never hangs if one does not.
 */
export async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms + GRACE_MS);
  });
  try {
    return await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The read point of a request: a read barrier for linearizable reads; for
 * stale reads nothing, and the staleness to report.
 */
export async function readPoint(ctx: ApiContext, consistency: Consistency): Promise<Staleness | undefined> {
  if (consistency === "stale") return ctx.node.staleness();
  const ms = ctx.limits.readTimeoutMs;
  await bounded(ctx.node.readBarrier({ timeoutMs: ms }), ms, "the read barrier (linearizable read)");
  return undefined;
}

export function stalenessHeader(s: Staleness | undefined): Record<string, string> {
  return s === undefined ? {} : { "x-cairn-staleness": JSON.stringify(s) };
}

/** The body of a 410 for a reader whose `since` is below the retained feed. */
export function goneBody(ctx: ApiContext, first: number): Record<string, unknown> {
  const checkpoint = ctx.checkpoints?.latest() ?? null;
  return { checkpoint, resumeFrom: checkpoint === null ? first - 1 : checkpoint.index, first };
}

export function goneError(ctx: ApiContext, since: number, first: number): ApiError {
  const body = goneBody(ctx, first);
  const how = body.checkpoint === null
    ? `no checkpoint is available yet: resume from ${first - 1} (changes ${since + 1}..${first - 1} are lost to this reader)`
    : "load the checkpoint first, then resume from its index";
  return new ApiError(410, "gone", `changes after ${since} up to ${first - 1} were trimmed from the retained feed (it starts at ${first}); ${how}`, {
    extra: body,
  });
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return jsonText(JSON.stringify(body), status, headers);
}

/** A JSON answer from text already serialized. */
export function jsonText(text: string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(text, { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}

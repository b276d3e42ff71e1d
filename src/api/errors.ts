/**
 * Every error the API answers, as `{"error": {"code", "message"}, ...extra}`
 * with a fitting status. Typed errors from the layers below map here by
 * class (instanceof), never by message text; anything unknown is a 500 with an
 * id that is also in the log line.
 */
import { HTTPException } from "hono/http-exception";
import { NodeError } from "../node/errors.ts";
import { DbBusyError, DiskFullError as DbDiskFullError } from "../platform/sqlite.ts";
import { InvalidCommandError } from "../statemachine/commands.ts";
import { InvalidQueryError } from "../statemachine/feed.ts";
import type { Logger } from "../util/log.ts";

/** 503s without their own hint say to retry after this many seconds. */
export const RETRY_AFTER_SEC_DEFAULT = 1;

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly opts: {
      /** Fields next to "error" in the body (e.g. the current version of a failed compare). */
      readonly extra?: Record<string, unknown>;
      readonly headers?: Record<string, string>;
      readonly retryAfterSec?: number;
    } = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, extra?: Record<string, unknown>): ApiError =>
  new ApiError(400, "bad_request", message, extra ? { extra } : {});

/** The JSON error response; 503 always carries Retry-After. */
export function errorResponse(e: ApiError): Response {
  const headers = new Headers({ "content-type": "application/json; charset=utf-8", ...e.opts.headers });
  const retry = e.opts.retryAfterSec ?? (e.status === 503 ? RETRY_AFTER_SEC_DEFAULT : undefined);
  if (retry !== undefined) headers.set("retry-after", String(Math.max(0, Math.ceil(retry))));
  const body = { error: { code: e.code, message: e.message }, ...e.opts.extra };
  return new Response(JSON.stringify(body), { status: e.status, headers });
}

/**
 * The status (and Retry-After) of each node error, by its code: every
 * NodeError class has one code (src/node/errors.ts, and the validators' in
 * validators.ts), and an error forwarded back from the leader (RemoteError)
 * keeps its code, so both are answered alike.
 */
const NODE_ERROR_STATUS: Readonly<Record<string, { readonly status: number; readonly retryAfterSec?: number }>> = {
  no_leader: { status: 503, retryAfterSec: 1 },
  timeout: { status: 503, retryAfterSec: 1 },
  proposal_lost: { status: 503, retryAfterSec: 0 },
  overloaded: { status: 503, retryAfterSec: 1 },
  busy: { status: 503, retryAfterSec: 1 },
  stopped: { status: 503, retryAfterSec: 1 },
  validator_busy: { status: 503, retryAfterSec: 1 },
  disk_full: { status: 507, retryAfterSec: 5 },
  bad_request: { status: 400 },
  invalid: { status: 400 },
  too_large: { status: 413 },
  rejected: { status: 422 },
};

/** The HTTP answer to a node error's code; an unknown code (a peer's unexpected failure) is a 500. */
export function nodeErrorStatus(code: string): { status: number; retryAfterSec?: number } {
  return Object.hasOwn(NODE_ERROR_STATUS, code) ? NODE_ERROR_STATUS[code]! : { status: 500 };
}

/** Maps any thrown value to an ApiError; unknown ones are logged with an id. */
export function toApiError(err: unknown, log: Logger, where: string): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof NodeError) {
    const { status, retryAfterSec } = nodeErrorStatus(err.code);
    return new ApiError(status, err.code, err.message, retryAfterSec === undefined ? {} : { retryAfterSec });
  }
  if (err instanceof InvalidCommandError) {
    return err.tooLarge ? new ApiError(413, "too_large", err.message) : new ApiError(400, "invalid", err.message);
  }
  if (err instanceof InvalidQueryError) return new ApiError(400, "invalid_query", err.message);
  if (err instanceof DbDiskFullError) {
    return new ApiError(507, "disk_full", `${err.message}: writes are refused until space is freed; reads continue`, { retryAfterSec: 5 });
  }
  if (err instanceof HTTPException) {
    return new ApiError(err.status, err.status === 413 ? "too_large" : "http_error", err.message || `HTTP ${err.status}`);
  }
  if (err instanceof DbBusyError) return new ApiError(503, "busy", `${err.message}; retry`, { retryAfterSec: 1 });
  const id = crypto.randomUUID();
  log.error("API request failed", { errorId: id, where, err, stack: err instanceof Error ? err.stack : undefined });
  return new ApiError(500, "internal", `internal error ${id}: the node's log has the details under errorId ${id}`);
}

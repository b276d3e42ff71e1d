/**
 * The client's typed errors, one class per kind of answer an application
 * handles differently; check them with instanceof. Every one carries the
 * HTTP status, the API's error code and message, and the whole JSON body.
 */

export class CairnError extends Error {
  override name = "CairnError";
  constructor(
    message: string,
    /** 0 when no answer came (connection refused, deadline passed before any answer). */
    readonly status: number,
    readonly code: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** 400, 413, 415, 422: the request as sent will never succeed; fix it. */
export class BadRequestError extends CairnError {
  override name = "BadRequestError";
}

/** 401 (no or bad token) and 403 (the token's role is too low). */
export class UnauthorizedError extends CairnError {
  override name = "UnauthorizedError";
}

/** 404: no such key, change or checkpoint. */
export class NotFoundError extends CairnError {
  override name = "NotFoundError";
}

/** 409 and 412: a precondition (If-Match, If-None-Match, a txn compare) does not hold. */
export class ConflictError extends CairnError {
  override name = "ConflictError";
  /** The key's current version when the server said it (0: absent). */
  get version(): number | undefined {
    return typeof this.body.version === "number" ? this.body.version : undefined;
  }
}

/** Where a reader below the retained feed goes on: the checkpoint to load, and the index to resume after. */
export interface CheckpointPointer {
  readonly id: string;
  readonly index: number;
  readonly url?: string;
}

/** 410: the changes asked for were trimmed; load the checkpoint (if any) and resume from resumeFrom. */
export class GoneError extends CairnError {
  override name = "GoneError";
  get checkpoint(): CheckpointPointer | null {
    const c = this.body.checkpoint as CheckpointPointer | null | undefined;
    return c && typeof c.id === "string" && typeof c.index === "number" ? c : null;
  }
  get resumeFrom(): number {
    return typeof this.body.resumeFrom === "number" ? this.body.resumeFrom : 0;
  }
}

/** 429: too many failed authentications from this address, or a rate limit. */
export class RateLimitedError extends CairnError {
  override name = "RateLimitedError";
}

/**
 * 503 (no leader, no quorum, timeout, stopping), 507 (disk full), or no
 * node answered at all (status 0) until the deadline: retry later.
 */
export class UnavailableError extends CairnError {
  override name = "UnavailableError";
  constructor(message: string, status: number, code: string, body: Record<string, unknown> = {}, readonly retryAfterMs?: number) {
    super(message, status, code, body);
  }
}

/** 500 or an answer the client does not understand. */
export class ServerError extends CairnError {
  override name = "ServerError";
}

/** The error of an HTTP answer with a status of 400 or more. */
export function errorOf(status: number, body: Record<string, unknown>, retryAfter: string | null, where: string): CairnError {
  const e = (body.error ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? e.code : `http_${status}`;
  const message = `${where}: ${status} ${typeof e.message === "string" ? e.message : JSON.stringify(body).slice(0, 300)}`;
  if (status === 401 || status === 403) return new UnauthorizedError(message, status, code, body);
  if (status === 404) return new NotFoundError(message, status, code, body);
  if (status === 409 || status === 412) return new ConflictError(message, status, code, body);
  if (status === 410) return new GoneError(message, status, code, body);
  if (status === 429) return new RateLimitedError(message, status, code, body);
  if (status === 503 || status === 507 || status === 502 || status === 504) {
    const sec = retryAfter !== null && /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) * 1000 : undefined;
    return new UnavailableError(message, status, code, body, sec);
  }
  if (status >= 400 && status < 500) return new BadRequestError(message, status, code, body);
  return new ServerError(message, status, code, body);
}

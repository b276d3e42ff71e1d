/**
 * The HTTP API (hono): the change feed, the key-value space, transactions
 * and operations, over a NodeApi. Serve it with platform/http.ts serveHttp:
 *   serveHttp({ hostname, port, fetch: createApp({...}).fetch })
 *
 * Every answer is JSON (except values, metrics, the SSE stream and the
 * dashboard); every error is {"error": {"code", "message"}} with its status;
 * every wait has a deadline.
 */
import { Hono } from "hono";
import type { NodeApi } from "../node/api.ts";
import { isFatalDbError } from "../platform/sqlite.ts";
import type { Logger } from "../util/log.ts";
import { registerChanges } from "./changes.ts";
import { Slots, type ApiContext, type ApiLimits, type CheckpointProvider } from "./context.ts";
import type { Authenticator, ClientCert } from "./auth.ts";
import { ApiError, errorResponse, toApiError } from "./errors.ts";
import { registerKv } from "./kv.ts";
import { HttpMetrics } from "./metrics.ts";
import { registerOps } from "./ops.ts";
import { allowOf, routeLabel, routeOf } from "./routes.ts";
import { registerTxn } from "./txn.ts";
import { registerWitnessGuard } from "./witness.ts";

export type { CheckpointProvider, CheckpointRef } from "./context.ts";
export { Authenticator } from "./auth.ts";

export interface ApiOptions {
  readonly node: NodeApi;
  readonly logger: Logger;
  readonly version: string;
  /** Request bodies above this get 413. Default 4 MiB. */
  readonly bodyBytesMax?: number;
  /**
   * Who may call: tokens and client certificates. Null or absent: no
   * authentication at all (`cairn serve --no-auth`); /status then says
   * "auth": "none" and lists it as a problem.
   */
  readonly auth?: Authenticator | null;
  /** Newest checkpoint for 410 answers (src/checkpoint/ plugs in here). */
  readonly checkpoints?: CheckpointProvider | null;
  /** Abort at shutdown: long polls answer, streams end, so the server can close. */
  readonly signal?: AbortSignal;
  readonly limits?: Partial<Omit<ApiLimits, "bodyBytesMax">>;
}

/**
 * What the server knows of a request's connection, as hono's env:
 * serveHttp calls `app.fetch(req, conn)` with platform/http.ts's Conn.
 */
export interface ConnInfo {
  readonly remoteAddress: string | null;
  /** A client certificate verified against the API client CA, or null. */
  readonly cert?: ClientCert | null;
}

export const BODY_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;

export const LIMITS_DEFAULT: Omit<ApiLimits, "bodyBytesMax"> = {
  writeTimeoutMs: 10_000,
  readTimeoutMs: 5_000,
  transferTimeoutMs: 10_000,
  blockSecMax: 60,
  waitsMax: 1024,
  sseKeepaliveMs: 15_000,
  sseStallMs: 60_000,
};

export function createApp(opts: ApiOptions): Hono {
  const log = opts.logger.with({ part: "api" });
  const ctx: ApiContext = {
    node: opts.node,
    log,
    limits: { ...LIMITS_DEFAULT, ...opts.limits, bodyBytesMax: opts.bodyBytesMax ?? BODY_BYTES_MAX_DEFAULT },
    version: opts.version,
    checkpoints: opts.checkpoints === undefined ? nodeCheckpoints(opts.node) : opts.checkpoints,
    shutdown: opts.signal ?? new AbortController().signal,
    waits: new Slots(opts.limits?.waitsMax ?? LIMITS_DEFAULT.waitsMax),
    auth: opts.auth ?? null,
  };
  const metrics = new HttpMetrics();
  const app = new Hono();

  // Outermost: metrics see the final status, errors included (hono's onError
  // has set c.res by the time next() returns).
  app.use("*", async (c, next) => {
    const start = performance.now();
    metrics.begin();
    try {
      await next();
    } finally {
      metrics.end({ method: c.req.method, route: routeLabel(c.req.path), status: c.res.status, seconds: (performance.now() - start) / 1000 });
    }
  });

  const auth = opts.auth;
  if (auth) {
    app.use("*", async (c, next) => {
      const conn = c.env as Partial<ConnInfo> | undefined;
      auth.check({
        method: c.req.method,
        path: c.req.path,
        authorization: c.req.header("authorization") ?? null,
        clientAddress: conn?.remoteAddress ?? null,
        cert: conn?.cert ?? null,
      });
      await next();
    });
  }

  registerWitnessGuard(app, opts.node);
  registerChanges(app, ctx);
  registerKv(app, ctx);
  registerTxn(app, ctx);
  registerOps(app, ctx, metrics);

  app.onError((err, c) => {
    // A damaged or failing database under a request (a read of a corrupt page) is the node's end, as in the loop.
    if (isFatalDbError(err)) {
      opts.node.fatal?.(err); // logs it, once (not when the node was stopping anyway)
      const failure = opts.node.failed?.();
      if (failure) return errorResponse(new ApiError(503, "failed", `this node has failed and is stopping (${failure.message}): send requests to another node`));
    }
    return errorResponse(toApiError(err, log, `${c.req.method} ${c.req.path}`));
  });
  app.notFound((c) => {
    const route = routeOf(c.req.path);
    if (route && !route.methods.includes(c.req.method)) {
      return errorResponse(
        new ApiError(405, "method_not_allowed", `${c.req.method} is not allowed on ${route.template}: use ${route.methods.join(", ")}`, {
          headers: { allow: allowOf(route) },
        }),
      );
    }
    return errorResponse(new ApiError(404, "not_found", `no route ${c.req.method} ${c.req.path}: the README lists the routes`));
  });
  return app;
}

/** The node's newest checkpoint as the 410 answer's pointer: load it, then resume the feed after its feedLast. */
function nodeCheckpoints(node: NodeApi): CheckpointProvider {
  return {
    latest() {
      const m = node.checkpoints()[0];
      return m ? { id: m.id, index: m.feedLast, url: `/checkpoints/${m.id}` } : null;
    },
  };
}

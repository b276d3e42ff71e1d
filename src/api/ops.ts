/**
 * Operations routes: /status, /health, /ready, /metrics, /admin/leader, the
 * checkpoint routes, the dashboard and /openapi.json.
 */
import type { Hono } from "hono";
import { z } from "zod";
import { bounded, json, type ApiContext } from "./context.ts";
import { cborImpl } from "../platform/cbor.ts";
import { fileStream } from "../platform/files.ts";
import { ChecksumMismatchError } from "../checkpoint/verify.ts";
import { DASHBOARD_HTML } from "./dashboard.ts";
import { openApiDocument } from "./openapi.ts";
import { ApiError, badRequest } from "./errors.ts";
import type { HttpMetrics } from "./metrics.ts";
import { readJsonBody } from "./request.ts";
import { zodMessage } from "./write.ts";

export const transferSchema = z.object({ to: z.string().min(1).optional() }).strict();

export function registerOps(app: Hono, ctx: ApiContext, metrics: HttpMetrics): void {
  app.get("/", () => new Response(DASHBOARD_HTML, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" } }));

  let openapi: string | undefined;
  app.get("/openapi.json", () => new Response((openapi ??= JSON.stringify(openApiDocument(ctx.version))), { headers: { "content-type": "application/json; charset=utf-8" } }));

  app.get("/status", () => json(withAuth(ctx.node.status(), ctx)));

  app.get("/health", () => {
    // A node that stopped itself (crash-only, a database error) is not healthy in the moment before the process exits.
    const failure = ctx.node.failed?.();
    if (failure) throw new ApiError(503, "failed", `this node has failed and is stopping: ${failure.message}`);
    return json({ ok: true, id: ctx.node.id, version: ctx.version });
  });

  app.get("/ready", () => {
    const r = ctx.node.readiness();
    if (r.ready) return json({ ready: true, reason: r.reason });
    throw new ApiError(503, "not_ready", `not ready: ${r.reason}`, { extra: { ready: false, reason: r.reason } });
  });

  app.get("/metrics", () => {
    const node = ctx.node.metricsText();
    const text = (node.endsWith("\n") || node === "" ? node : node + "\n") + metrics.text(ctx.waits.inUse) + (ctx.auth?.metricsText() ?? "");
    return new Response(text, { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
  });

  app.post("/admin/leader", async (c) => {
    const body = await readJsonBody(c.req.raw, ctx.limits.bodyBytesMax, { optional: true });
    const parsed = transferSchema.safeParse(body ?? {});
    if (!parsed.success) throw badRequest(`${zodMessage(parsed.error)}: send {} or {"to": "n2"}`);
    const ms = ctx.limits.transferTimeoutMs;
    const to = parsed.data.to;
    const r = await bounded(ctx.node.transferLeader({ ...(to === undefined ? {} : { to }), timeoutMs: ms }), ms, "the leadership transfer");
    return json({ from: r.from, to: r.to });
  });

  app.get("/checkpoints", () => json({ checkpoints: ctx.node.checkpoints() }));

  app.get("/checkpoints/:id", async (c) => {
    const id = c.req.param("id");
    let f;
    try {
      f = ctx.node.verifiedCheckpointFile ? await ctx.node.verifiedCheckpointFile(id) : ctx.node.checkpointFile(id);
    } catch (e) {
      if (!(e instanceof ChecksumMismatchError)) throw e;
      throw new ApiError(500, "checkpoint_damaged", `checkpoint ${id} on this node failed verification (${e.message}); it was discarded: build a fresh one with POST /admin/checkpoint, or fetch one from another node`);
    }
    if (!f) throw new ApiError(404, "not_found", `no checkpoint ${id} on this node; GET /checkpoints lists them`);
    const m = f.manifest;
    return new Response(fileStream(f.path), {
      headers: {
        "content-type": "application/vnd.sqlite3",
        "content-length": String(m.bytes),
        "content-disposition": `attachment; filename="${m.id}.db"`,
        "x-checksum-sha256": m.sha256,
        "x-checkpoint-index": String(m.index),
        "x-checkpoint-feed-last": String(m.feedLast),
        etag: `"${m.sha256}"`,
      },
    });
  });

  app.post("/admin/checkpoint", async () => {
    const m = await ctx.node.createCheckpoint();
    return json({ checkpoint: m });
  });
}

/** NO_AUTH_PROBLEM: the /status problem of a node that lets anyone in. */
export const NO_AUTH_PROBLEM = "the API has no authentication (--no-auth): anyone who reaches it can read, write and call /admin; start it with a tokens file";

/**
 * /status with how callers are authenticated (no authentication is a
 * problem) and which CBOR decoder this process runs ("native" | "js").
 */
function withAuth<S extends { problems: readonly string[] }>(s: S, ctx: ApiContext): S & { auth: string; cbor: string } {
  const cbor = cborImpl();
  if (ctx.auth === null) return { ...s, auth: "none", cbor, problems: [...s.problems, NO_AUTH_PROBLEM] };
  return { ...s, auth: ctx.auth.clientCa ? "tokens+client-certificates" : "tokens", cbor };
}

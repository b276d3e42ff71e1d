/**
 * The key-value routes: PUT/GET/DELETE /kv/KEY with versions as ETags, and
 * GET /kv?prefix= listing.
 *
 * PUT answers 201 when the write is known to have created the key
 * (If-None-Match: * or If-Match: 0), 200 otherwise: the state machine's
 * result does not say whether an unconditional put replaced a value.
 */
import type { Context, Hono } from "hono";
import type { CommandResult, Replayed } from "../statemachine/commands.ts";
import { LIST_LIMIT_MAX } from "../statemachine/limits.ts";
import { json, readPoint, stalenessHeader, type ApiContext } from "./context.ts";
import { renderResult, renderValue, type Rendered } from "./encode.ts";
import { ApiError } from "./errors.ts";
import {
  consistencyParam,
  etagOf,
  ifNoneMatchVersions,
  intParam,
  keyFromPath,
  parseIfMatch,
  parseIfNoneMatchStar,
  rawPathOf,
  readBodyLimited,
} from "./request.ts";
import { propose } from "./write.ts";

const DEFAULT_CONTENT_TYPE = "application/octet-stream";

function keyOf(c: Context): string {
  return keyFromPath(rawPathOf(c.req.url), "/kv/");
}

/** Adds the ETag of a kv write answer. */
function withEtag(r: Rendered): Rendered & { headers: Record<string, string> } {
  const v = r.body.version;
  return { ...r, headers: typeof v === "number" ? { etag: etagOf(v) } : {} };
}

/**
 * If-Match: * (the key must exist) has no field in the put command: it
 * becomes a txn (exists = true ? put : nothing), rendered like a put.
 */
function renderPutIfExists(key: string, r: Replayed<CommandResult>): Rendered {
  if (!("succeeded" in r)) return renderResult(r);
  if (!r.succeeded) {
    throw new ApiError(412, "compare_failed", `key ${JSON.stringify(key)} does not exist: If-Match: * needs an existing key`, {
      extra: { key, version: 0 },
    });
  }
  const put = r.results[0];
  const version = put?.version ?? r.index ?? 0;
  const replayed = r.replayed === true ? { replayed: true } : {};
  return { status: 200, body: { key, version, index: r.index ?? version, term: r.term, ts: r.ts, ...replayed } };
}

export function registerKv(app: Hono, ctx: ApiContext): void {
  app.get("/kv", async (c) => {
    const consistency = consistencyParam(c.req.query("consistency"));
    const limit = intParam(c.req.query("limit"), "limit", { min: 1, max: LIST_LIMIT_MAX }, 100);
    const prefix = c.req.query("prefix");
    const after = c.req.query("after");
    const staleness = await readPoint(ctx, consistency);
    const page = ctx.node.fsm.list({ limit, ...(prefix ? { prefix } : {}), ...(after ? { after } : {}) });
    const items = page.items.map((it) => ({ key: it.key, version: it.version, contentType: it.contentType, ...renderValue(it.value, it.contentType) }));
    const body = { items, ...(page.next === undefined ? {} : { next: page.next }), ...(staleness ? { staleness } : {}) };
    return json(body, 200, stalenessHeader(staleness));
  });

  app.put("/kv/*", async (c) => {
    const key = keyOf(c);
    const ifMatch = parseIfMatch(c.req.header("if-match") ?? null);
    const ifNoneMatch = parseIfNoneMatchStar(c.req.header("if-none-match") ?? null);
    const value = await readBodyLimited(c.req.raw, ctx.limits.bodyBytesMax);
    const contentType = c.req.header("content-type") || DEFAULT_CONTENT_TYPE;
    if (ifMatch?.kind === "any") {
      if (ifNoneMatch) throw new ApiError(412, "compare_failed", "If-Match: * and If-None-Match: * together can never hold", { extra: { key } });
      const txn = {
        op: "txn" as const,
        compare: [{ key, target: "exists" as const, op: "=" as const, value: true }],
        success: [{ op: "put" as const, key, value, contentType }],
        failure: [],
      };
      return propose(ctx, c, txn, (r) => withEtag(renderPutIfExists(key, r)));
    }
    const version = ifMatch?.kind === "version" ? ifMatch.version : undefined;
    const created = ifNoneMatch || version === 0;
    const cmd = { op: "put" as const, key, value, contentType, ...(version === undefined ? {} : { ifMatch: version }), ...(ifNoneMatch ? { ifNoneMatch } : {}) };
    return propose(ctx, c, cmd, (r) => withEtag(renderResult(r, { created })));
  });

  app.get("/kv/*", async (c) => {
    const key = keyOf(c);
    const staleness = await readPoint(ctx, consistencyParam(c.req.query("consistency")));
    const e = ctx.node.fsm.get(key);
    if (e === null) throw new ApiError(404, "not_found", `key ${JSON.stringify(key)} does not exist`, { extra: { key } });
    const headers = { etag: etagOf(e.version), "x-cairn-version": String(e.version), ...stalenessHeader(staleness) };
    const known = ifNoneMatchVersions(c.req.header("if-none-match") ?? null);
    if (known.any || known.versions.has(e.version)) return new Response(null, { status: 304, headers });
    return new Response(e.value as Uint8Array<ArrayBuffer>, { status: 200, headers: { ...headers, "content-type": e.contentType } });
  });

  app.delete("/kv/*", async (c) => {
    const key = keyOf(c);
    const ifMatch = parseIfMatch(c.req.header("if-match") ?? null);
    // If-Match: * on delete: the key must exist, which a plain delete checks already (404).
    const cmd = { op: "del" as const, key, ...(ifMatch?.kind === "version" ? { ifMatch: ifMatch.version } : {}) };
    return propose(ctx, c, cmd);
  });
}

/**
 * The change feed routes: POST /changes, GET /changes (long poll with
 * `block`), GET /changes/stream (SSE) and GET /changes/N.
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import { firstLoneSurrogate, pathStep, type ChangeItem, type JsonValue } from "../statemachine/commands.ts";
import type { ChangePage, ChangeQuery } from "../statemachine/feed.ts";
import { BATCH_ITEMS_MAX, JSON_DEPTH_MAX, LIST_LIMIT_MAX } from "../statemachine/limits.ts";
import { bounded, goneBody, goneError, json, jsonText, readPoint, stalenessHeader, type ApiContext } from "./context.ts";
import { oncePerPage } from "./encode.ts";
import { ApiError, badRequest } from "./errors.ts";
import {
  blockParam,
  consistencyParam,
  intParam,
  readJsonBody,
  sinceParam,
  sinceTsParam,
  type Consistency,
} from "./request.ts";
import { changeStream, lastEventIdOf } from "./sse.ts";
import { propose, zodMessage } from "./write.ts";

export const itemSchema = z
  .object({
    data: z.unknown().refine((v) => v !== undefined, { message: "data is required (any JSON value)" }),
    tags: z.array(z.string()).optional(),
  })
  .strict();

/** One change or an array of them (one atomic batch). */
export function parseChangeItems(body: unknown): ChangeItem[] {
  const list = Array.isArray(body) ? body : [body];
  if (list.length > BATCH_ITEMS_MAX) {
    throw new ApiError(413, "too_large", `the batch has ${list.length} changes, over ${BATCH_ITEMS_MAX}: split it`);
  }
  if (list.length === 0) throw badRequest("the batch is empty: send at least one change");
  const parsed = z.array(itemSchema).safeParse(list);
  if (!parsed.success) {
    throw badRequest(`${zodMessage(parsed.error, Array.isArray(body) ? "" : "!")}: send {"data": <JSON>, "tags": ["a"]} or an array of those`);
  }
  list.forEach((it, i) => refuseLoneSurrogates((it as { data: unknown }).data, Array.isArray(body) ? `[${i}].data` : "data", 0));
  return parsed.data.map((it) => ({ data: it.data as JsonValue, tags: it.tags ?? [] }));
}

/**
 * JSON text can carry a lone surrogate ("\ud800") that UTF-8 cannot store:
 * kept, it would come back as U+FFFD. Refused with its place in the body.
 * Deeper than JSON_DEPTH_MAX the state machine refuses the nesting anyway.
 */
function refuseLoneSurrogates(v: unknown, path: string, depth: number): void {
  if (depth > JSON_DEPTH_MAX) return;
  const fail = (what: string, s: string): never => {
    const at = firstLoneSurrogate(s);
    throw badRequest(
      `${what} holds an unpaired surrogate (U+${s.charCodeAt(at).toString(16).toUpperCase()} at character ${at}), which UTF-8 cannot store: send well-formed Unicode (pair it or drop it)`,
      { path },
    );
  };
  if (typeof v === "string") {
    if (firstLoneSurrogate(v) >= 0) fail(path, v);
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => refuseLoneSurrogates(x, `${path}[${i}]`, depth + 1));
  } else if (typeof v === "object" && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      if (firstLoneSurrogate(k) >= 0) fail(`the key ${JSON.stringify(k)} in ${path}`, k);
      refuseLoneSurrogates(x, `${path}${pathStep(k)}`, depth + 1);
    }
  }
}

interface FeedParams {
  readonly since: number | undefined;
  readonly query: ChangeQuery;
  readonly blockMs: number;
  readonly consistency: Consistency;
}

function feedParams(ctx: ApiContext, c: Context): FeedParams {
  const since = sinceParam(c.req.query("since"));
  const sinceTs = sinceTsParam(c.req.query("since_ts"));
  const limit = intParam(c.req.query("limit"), "limit", { min: 1, max: LIST_LIMIT_MAX }, 100);
  const tags = tagsParam(c);
  const query: ChangeQuery = { ...(since === undefined ? {} : { since }), ...(sinceTs === undefined ? {} : { sinceTs }), limit, tags };
  const blockMs = Math.round(blockParam(c.req.query("block"), ctx.limits.blockSecMax) * 1000);
  return { since, query, blockMs, consistency: consistencyParam(c.req.query("consistency")) };
}

function tagsParam(c: Context): string[] {
  const tags = c.req.queries("tag") ?? [];
  if (tags.some((t) => t === "")) throw badRequest("tag= is empty: name a tag, or leave tag out to get every change");
  return tags;
}

export function registerChanges(app: Hono, ctx: ApiContext): void {
  app.post("/changes", async (c) => {
    const items = parseChangeItems(await readJsonBody(c.req.raw, ctx.limits.bodyBytesMax));
    return propose(ctx, c, { op: "changes", items });
  });

  app.get("/changes", async (c) => {
    const p = feedParams(ctx, c);
    await readPoint(ctx, p.consistency);
    let page = queryPage(ctx, p);
    if (page.changes.length === 0 && p.blockMs > 0) page = await longPoll(ctx, c, p, page);
    const staleness = p.consistency === "stale" ? ctx.node.staleness() : undefined;
    if (staleness) return json({ ...page, staleness }, 200, stalenessHeader(staleness));
    return jsonText(pageJson(page));
  });

  app.get("/changes/stream", async (c) => {
    const tags = tagsParam(c);
    const since = lastEventIdOf(c.req.header("last-event-id") ?? null) ?? sinceParam(c.req.query("since"));
    await readPoint(ctx, consistencyParam(c.req.query("consistency")));
    const first = ctx.node.fsm.firstRetained();
    if (since !== undefined && since < first - 1) throw goneError(ctx, since, first);
    const headers = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" };
    // HEAD gets the headers only: a stream nobody reads would hold a waiting slot.
    if (c.req.method === "HEAD") return new Response(null, { headers });
    const release = ctx.waits.acquire("long polls and streams");
    const body = changeStream({
      node: ctx.node,
      since,
      tags,
      signal: AbortSignal.any([c.req.raw.signal, ctx.shutdown]),
      keepaliveMs: ctx.limits.sseKeepaliveMs,
      stallMs: ctx.limits.sseStallMs,
      pageLimit: 100,
      log: ctx.log,
      gone: (resumeFrom) => ({ ...goneBody(ctx, resumeFrom + 1), message: "this stream fell behind the retained feed" }),
      onClose: release,
    });
    return new Response(body, { headers });
  });

  app.get("/changes/:index", async (c) => {
    const index = intParam(c.req.param("index"), "the change index", { min: 1, max: Number.MAX_SAFE_INTEGER }, 0);
    const consistency = consistencyParam(c.req.query("consistency"));
    const staleness = await readPoint(ctx, consistency);
    const change = ctx.node.fsm.getChange(index);
    if (change !== null) return json(change, 200, stalenessHeader(staleness));
    const first = ctx.node.fsm.firstRetained();
    if (index < first) throw goneError(ctx, index - 1, first);
    throw new ApiError(404, "not_found", `change ${index} does not exist yet: the feed ends at ${ctx.node.fsm.feedState().last}`);
  });
}

/** A page's JSON, made once per page (long polls woken by the same change share it). */
const pageJson = oncePerPage((page) => JSON.stringify(page));

/** One page; 410 when an explicit `since` is below the retained feed. */
function queryPage(ctx: ApiContext, p: FeedParams): ChangePage {
  const page = ctx.node.fsm.listChanges(p.query);
  if (p.since !== undefined && p.since < page.first - 1) throw goneError(ctx, p.since, page.first);
  return page;
}

/** A feed wait that ends this much before its deadline without news was refused by the node. */
const EARLY_MS = 5;

/**
 * Waits for a first matching change until the block time ends, the client
 * goes away or the server shuts down; then answers what there is (maybe
 * nothing: an empty page, not an error).
 */
async function longPoll(ctx: ApiContext, c: Context, p: FeedParams, first: ChangePage): Promise<ChangePage> {
  const release = ctx.waits.acquire("long polls and streams");
  const signal = AbortSignal.any([c.req.raw.signal, ctx.shutdown]);
  const deadline = Date.now() + p.blockMs;
  let page = first;
  try {
    for (;;) {
      const leftMs = deadline - Date.now();
      if (leftMs <= 0 || signal.aborted) return page;
      const news = await bounded(ctx.node.waitForFeed(page.last, leftMs, signal), leftMs, "waiting for the feed");
      // Refused at once (too many waiters, node stopping): answer now rather than spin.
      if (!news && !signal.aborted && Date.now() < deadline - EARLY_MS) return page;
      page = queryPage(ctx, p);
      if (page.changes.length > 0) return page;
    }
  } finally {
    release();
  }
}

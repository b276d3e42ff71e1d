import { describe, expect, test } from "bun:test";
import { requiredRole } from "../../src/api/auth.ts";
import { renderResult, renderValue } from "../../src/api/encode.ts";
import { ApiError, errorResponse, toApiError } from "../../src/api/errors.ts";
import {
  blockParam,
  consistencyParam,
  ifNoneMatchVersions,
  intParam,
  isJsonContentType,
  keyFromPath,
  parseIfMatch,
  parseIfNoneMatchStar,
  parseJsonBytes,
  rawPathOf,
  readBodyLimited,
  sinceTsParam,
  waitParam,
} from "../../src/api/request.ts";
import { allowOf, routeLabel, routeOf } from "../../src/api/routes.ts";
import { formatChangeEvent, formatSse, formatSseComment, lastEventIdOf } from "../../src/api/sse.ts";
import { NoLeaderError, TimeoutError } from "../../src/node/errors.ts";
import { DiskFullError } from "../../src/platform/sqlite.ts";
import { InvalidCommandError } from "../../src/statemachine/commands.ts";
import { InvalidQueryError } from "../../src/statemachine/feed.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { authWith, tokenSet } from "./helpers.ts";

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error("expected an ApiError");
}

function chunkedRequest(chunks: number, size: number): Request {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent++ === chunks) return c.close();
      c.enqueue(new Uint8Array(size));
    },
  });
  return new Request("http://x/", { method: "POST", body, duplex: "half" } as RequestInit);
}

describe("If-Match and ETags", () => {
  test("a plain number, a quoted ETag and * are accepted", () => {
    expect(parseIfMatch("5")).toEqual({ kind: "version", version: 5 });
    expect(parseIfMatch('"5"')).toEqual({ kind: "version", version: 5 });
    expect(parseIfMatch(' "0" ')).toEqual({ kind: "version", version: 0 });
    expect(parseIfMatch("*")).toEqual({ kind: "any" });
    expect(parseIfMatch(null)).toBeUndefined();
  });

  test("weak tags, lists, garbage and half-quoted values are 400 bad_precondition", () => {
    for (const bad of ['W/"5"', '"1", "2"', "abc", '"5', "-1", "1.5", ""]) {
      const e = apiError(() => parseIfMatch(bad));
      expect(e.status).toBe(400);
      expect(e.code).toBe("bad_precondition");
    }
  });

  test("If-None-Match on a write takes only *", () => {
    expect(parseIfNoneMatchStar("*")).toBe(true);
    expect(parseIfNoneMatchStar(null)).toBe(false);
    expect(apiError(() => parseIfNoneMatchStar('"3"')).status).toBe(400);
  });

  test("If-None-Match on a read lists the versions the client has", () => {
    const v = ifNoneMatchVersions('"3", W/"4", 5');
    expect([...v.versions].sort()).toEqual([3, 4, 5]);
    expect(v.any).toBe(false);
    expect(ifNoneMatchVersions("*").any).toBe(true);
  });
});

describe("keys in paths", () => {
  test("the key is the percent-decoded rest of the path, slashes included", () => {
    expect(keyFromPath("/kv/a/b/c", "/kv/")).toBe("a/b/c");
    expect(keyFromPath("/kv/a%2Fb%20c", "/kv/")).toBe("a/b c");
    expect(keyFromPath("/kv/%E2%9C%93", "/kv/")).toBe("✓");
  });

  test("an empty key and a broken escape are 400", () => {
    expect(apiError(() => keyFromPath("/kv/", "/kv/")).status).toBe(400);
    expect(apiError(() => keyFromPath("/kv/%E2%9C", "/kv/")).message).toContain("percent-encoding");
  });

  test("rawPathOf keeps the encoding and drops query and fragment", () => {
    expect(rawPathOf("http://h:1/kv/a%2Fb?x=1#f")).toBe("/kv/a%2Fb");
    expect(rawPathOf("https://h/")).toBe("/");
    expect(rawPathOf("http://h")).toBe("/");
  });
});

describe("query parameters", () => {
  test("whole numbers within a range", () => {
    expect(intParam(undefined, "limit", { min: 1, max: 10 }, 7)).toBe(7);
    expect(intParam("3", "limit", { min: 1, max: 10 }, 7)).toBe(3);
    expect(apiError(() => intParam("0", "limit", { min: 1, max: 10 }, 7)).message).toContain("out of range");
    expect(apiError(() => intParam("x", "limit", { min: 1, max: 10 }, 7)).message).toContain("not a whole number");
    expect(apiError(() => intParam("1e3", "limit", { min: 1, max: 10000 }, 7)).status).toBe(400);
  });

  test("since_ts takes milliseconds or ISO 8601", () => {
    expect(sinceTsParam("1700000000000")).toBe(1700000000000);
    expect(sinceTsParam("2024-05-01T12:00:00Z")).toBe(Date.parse("2024-05-01T12:00:00Z"));
    expect(sinceTsParam(undefined)).toBeUndefined();
    expect(apiError(() => sinceTsParam("yesterday")).status).toBe(400);
  });

  test("block is seconds, decimals allowed, capped", () => {
    expect(blockParam("0.5", 60)).toBe(0.5);
    expect(blockParam("600", 60)).toBe(60);
    expect(blockParam(undefined, 60)).toBe(0);
    expect(apiError(() => blockParam("-1", 60)).status).toBe(400);
    expect(apiError(() => blockParam("soon", 60)).status).toBe(400);
  });

  test("consistency and wait", () => {
    expect(consistencyParam(undefined)).toBe("linearizable");
    expect(consistencyParam("stale")).toBe("stale");
    expect(apiError(() => consistencyParam("eventual")).status).toBe(400);
    expect(waitParam("none")).toBe("accepted");
    expect(waitParam(undefined)).toBe("applied");
    expect(apiError(() => waitParam("later")).status).toBe(400);
  });
});

describe("bodies", () => {
  test("JSON content types: application/json and application/*+json, with parameters", () => {
    expect(isJsonContentType("application/json")).toBe(true);
    expect(isJsonContentType("Application/JSON; charset=utf-8")).toBe(true);
    expect(isJsonContentType("application/merge-patch+json")).toBe(true);
    expect(isJsonContentType("text/plain")).toBe(false);
    expect(isJsonContentType("text/json+x")).toBe(false);
    expect(isJsonContentType(null)).toBe(false);
  });

  test("malformed JSON is 400 bad_json with the parser's message", () => {
    const e = apiError(() => parseJsonBytes(new TextEncoder().encode('{"data": ')));
    expect(e.status).toBe(400);
    expect(e.code).toBe("bad_json");
    expect(e.message).toContain("not valid JSON");
    expect(apiError(() => parseJsonBytes(new Uint8Array([0xff, 0xfe]))).message).toContain("UTF-8");
  });

  test("a declared Content-Length over the limit is 413 before reading", async () => {
    const req = new Request("http://x/", { method: "POST", body: "x".repeat(10), headers: { "content-length": "999999" } });
    const err = await readBodyLimited(req, 100).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(413);
  });

  test("a body with a Content-Length within the limit is read whole; one that carries more than it declares is still 413", async () => {
    const ok = await readBodyLimited(new Request("http://x/", { method: "POST", body: "y".repeat(64), headers: { "content-length": "64" } }), 100);
    expect(new TextDecoder().decode(ok)).toBe("y".repeat(64));
    const lying = new Request("http://x/", { method: "POST", body: "z".repeat(500), headers: { "content-length": "10" } });
    const err = await readBodyLimited(lying, 100).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(413);
  });

  test("a chunked body is cut off once it passes the limit while reading", async () => {
    const err = await readBodyLimited(chunkedRequest(100, 1000), 5000).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(413);
    expect(err.message).toContain("over 5000 bytes");
    const ok = await readBodyLimited(chunkedRequest(5, 1000), 5000);
    expect(ok.byteLength).toBe(5000);
  });
});

describe("error mapping", () => {
  const { log, lines } = memoryLogger();

  test("node errors keep their status and code; 503 carries Retry-After", async () => {
    const res = errorResponse(toApiError(new NoLeaderError(), log, "t"));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect((await res.json()).error.code).toBe("no_leader");
    expect(toApiError(new TimeoutError("x", 5), log, "t").status).toBe(503);
  });

  test("invalid commands are 400, too large ones 413; invalid queries 400", () => {
    expect(toApiError(new InvalidCommandError("bad"), log, "t").status).toBe(400);
    expect(toApiError(new InvalidCommandError("big", true), log, "t").status).toBe(413);
    expect(toApiError(new InvalidQueryError("q"), log, "t").status).toBe(400);
    expect(toApiError(new DiskFullError("/d/db"), log, "t").status).toBe(507);
  });

  test("anything else is 500 with an error id that is also in the log", async () => {
    const e = toApiError(new Error("boom"), log, "GET /x");
    expect(e.status).toBe(500);
    const id = /internal error ([0-9a-f-]{36})/.exec(e.message)?.[1];
    expect(id).toBeDefined();
    expect(lines.some((l) => l.includes(id!) && l.includes("boom"))).toBe(true);
    const body = await errorResponse(e).json();
    expect(body).toEqual({ error: { code: "internal", message: e.message } });
  });

  test("an ApiError of status 503 without a hint still gets Retry-After", () => {
    expect(errorResponse(new ApiError(503, "x", "y")).headers.get("retry-after")).toBe("1");
    expect(errorResponse(new ApiError(400, "x", "y")).headers.get("retry-after")).toBeNull();
  });
});

describe("rendering", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  test("values render like the feed: JSON, text or base64", () => {
    expect(renderValue(bytes('{"a":1}'), "application/json")).toEqual({ value: { a: 1 } });
    expect(renderValue(bytes('{"a":1}'), "application/vnd.x+json; charset=utf-8")).toEqual({ value: { a: 1 } });
    expect(renderValue(bytes("{nope"), "application/json")).toEqual({ base64: Buffer.from("{nope").toString("base64") });
    expect(renderValue(bytes("hi"), "text/plain")).toEqual({ text: "hi" });
    expect(renderValue(new Uint8Array([0xff]), "text/plain")).toEqual({ base64: "/w==" });
    expect(renderValue(bytes("hi"), "application/octet-stream")).toEqual({ base64: "aGk=" });
  });

  test("results render by shape: changes 201, kv 200/201, txn 200, failed compare 412, absent 404", () => {
    expect(renderResult({ index: 1, last: 2, term: 1, ts: 5 })).toEqual({ status: 201, body: { index: 1, last: 2, term: 1, ts: 5 } });
    expect(renderResult({ index: 1, last: 1, term: 1, ts: 5, replayed: true }).body.replayed).toBe(true);
    const put = { op: "put" as const, key: "k", version: 3, index: 3, term: 1, ts: 5 };
    expect(renderResult(put).status).toBe(200);
    expect(renderResult(put, { created: true }).status).toBe(201);
    const cf = apiError(() => renderResult({ error: "compare_failed", key: "k", version: 7 }));
    expect([cf.status, cf.opts.extra?.version, cf.opts.headers?.etag]).toEqual([412, 7, '"7"']);
    expect(apiError(() => renderResult({ error: "not_found", key: "k" })).status).toBe(404);
    expect(apiError(() => renderResult({ error: "invalid", message: "m" })).status).toBe(400);
    const txn = renderResult({ succeeded: true, results: [{ op: "get", key: "k", value: null, contentType: null, version: 0 }], term: 1, ts: 5 });
    expect(txn).toEqual({ status: 200, body: { succeeded: true, results: [{ op: "get", key: "k", found: false, version: 0 }], term: 1, ts: 5 } });
  });
});

describe("server-sent events", () => {
  test("an event has event, id and one data line per line", () => {
    expect(formatSse({ id: "3", event: "change", data: "a\nb" })).toBe("event: change\nid: 3\ndata: a\ndata: b\n\n");
    expect(formatSseComment("keepalive")).toBe(": keepalive\n\n");
    expect(() => formatSse({ id: "1\n2", data: "" })).toThrow();
  });

  test("a change event carries the change as JSON with its index as id", () => {
    const text = formatChangeEvent({ index: 9, term: 2, ts: 1, data: { x: "a\nb" }, tags: ["t"] });
    expect(text).toStartWith("event: change\nid: 9\ndata: ");
    expect(JSON.parse(text.split("data: ")[1]!)).toEqual({ index: 9, term: 2, ts: 1, data: { x: "a\nb" }, tags: ["t"] });
  });

  test("Last-Event-ID is an index or ignored", () => {
    expect(lastEventIdOf("12")).toBe(12);
    expect(lastEventIdOf(" 0 ")).toBe(0);
    expect(lastEventIdOf("abc")).toBeUndefined();
    expect(lastEventIdOf(null)).toBeUndefined();
  });
});

describe("tokens and routes", () => {
  const tokens = { read: ["r"], write: ["w"], admin: ["a"] };

  test("roles: GET read, writes write, /admin admin, /health and / open", () => {
    expect(requiredRole("GET", "/changes")).toBe("read");
    expect(requiredRole("HEAD", "/kv/x")).toBe("read");
    expect(requiredRole("POST", "/txn")).toBe("write");
    expect(requiredRole("POST", "/admin/leader")).toBe("admin");
    expect(requiredRole("GET", "/health")).toBeNull();
    expect(requiredRole("GET", "/")).toBeNull();
    expect(requiredRole("POST", "/health")).toBe("write");
  });

  test("a token's entry is found by its hash; unknown and empty tokens have none", () => {
    expect(tokenSet(tokens).lookup("a")?.role).toBe("admin");
    expect(tokenSet(tokens).lookup("nope")).toBeNull();
    expect(tokenSet({ read: [""] }).lookup("")).toBeNull();
  });

  test("401 without a token or with an unknown one, 403 with too low a role", () => {
    const at = (authorization: string | null, method = "POST", path = "/changes") =>
      apiError(() => {
        authWith(tokens).check({ method, path, authorization, clientAddress: "192.0.2.1", cert: null });
        throw new ApiError(200, "ok", "allowed");
      });
    expect(at(null).status).toBe(401);
    expect(at(null).opts.headers?.["www-authenticate"]).toContain("Bearer");
    expect(at("Bearer nope").status).toBe(401);
    expect(at("Basic r").status).toBe(401);
    expect(at("Bearer r").status).toBe(403);
    expect(at("Bearer w").status).toBe(200);
    expect(at("Bearer w", "POST", "/admin/leader").status).toBe(403);
    expect(at("bearer a", "POST", "/admin/leader").status).toBe(200);
    expect(at("Bearer r", "GET", "/kv").status).toBe(200);
  });

  test("route templates label metrics and give Allow", () => {
    expect(routeLabel("/changes/stream")).toBe("/changes/stream");
    expect(routeLabel("/changes/17")).toBe("/changes/:index");
    expect(routeLabel("/kv/a/b")).toBe("/kv/:key");
    expect(routeLabel("/wat")).toBe("unmatched");
    expect(allowOf(routeOf("/kv/x")!)).toBe("GET, HEAD, PUT, DELETE");
  });
});

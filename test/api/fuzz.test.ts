/**
 * Fuzzing every API route through the real app over a real node: random
 * and mutated valid requests (methods, paths with odd percent-encoding,
 * query strings, headers, bodies). Never a 500, never an unhandled
 * rejection, every 4xx is the JSON error shape, and the node keeps serving
 * reads and writes afterwards. CI runs a fixed seed; CAIRN_FUZZ_RUNS=100000
 * runs longer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { createApp } from "../../src/api/app.ts";
import { waitFor } from "../helpers/ports.ts";
import { fuzzParams, fuzzTimeoutMs, oddJson, oddString } from "../helpers/fuzz.ts";
import { Authenticator } from "../../src/api/auth.ts";
import { FailureLimiter } from "../../src/api/authlimit.ts";
import { singleNode, tokenSet, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
let app: ReturnType<typeof createApp>;
let authApp: ReturnType<typeof createApp>;
const rejections: unknown[] = [];
const onRejection = (e: unknown) => rejections.push(e);

beforeAll(async () => {
  h = await singleNode();
  // Short waits: a random block=60 or a slow write must not stall the run.
  const limits = { blockSecMax: 0.05, writeTimeoutMs: 3000, readTimeoutMs: 3000, transferTimeoutMs: 500, sseKeepaliveMs: 50 };
  app = h.appWith({ limits });
  // A limiter that never blocks, so that requests get past the rate limit to every route (429 is checked in auth tests).
  const tokens = tokenSet({ read: ["tok-r"], write: ["tok-w"], admin: ["tok-a"] });
  const limiter = new FailureLimiter({ failuresMax: 1e9, windowMs: 1000, addressesMax: 10 });
  authApp = h.appWith({ limits, auth: new Authenticator({ tokens: () => tokens, limiter }) });
  process.on("unhandledRejection", onRejection);
});
afterAll(async () => {
  process.off("unhandledRejection", onRejection);
  await h.close();
});

const PATHS = [
  "/", "/changes", "/changes/stream", "/changes/1", "/changes/0", "/changes/-1", "/changes/abc", "/changes/99999999999999999999",
  "/kv", "/kv/a", "/kv/a/b", "/kv/%2F", "/kv/%zz", "/kv/%ED%A0%80", "/kv/%F0%9F%98%80", "/kv/" + "k".repeat(2000), "/kv/",
  "/txn", "/status", "/health", "/ready", "/metrics", "/admin/leader", "/admin/checkpoint", "/checkpoints", "/checkpoints/x",
  "/checkpoints/..%2F..%2Fetc%2Fpasswd", "/nope", "//changes", "/changes/", "/kv?x", "/%00",
];
const PARAMS = ["since", "since_ts", "limit", "tag", "block", "consistency", "wait", "prefix", "after", "x"];
const VALUES = ["", "0", "1", "-1", "-0", "1.5", "1e3", "9007199254740993", "abc", "stale", "linearizable", "none", "applied", "2024-05-01T12:00:00Z", "%zz", "%ED%A0%80", "\u{1f600}", "kv", " "];
const HEADERS = ["content-type", "if-match", "if-none-match", "idempotency-key", "last-event-id", "authorization", "accept", "x-whatever"];
const HEADER_VALUES = ["application/json", "text/plain", "application/x+json; charset=utf-8", "*", '"1"', "W/\"1\"", "1, 2", "0", "-1", "abc", "", "Bearer x", "Bearer tok-r", "Bearer tok-w", "Bearer tok-a", "bearer tok-a", "Basic dG9rLWE=", "é", "\u00ff", "\"99999999999999999999\""];

/** A header value the Fetch API accepts (latin1, no CR/LF/NUL). */
const headerValue = fc.oneof(fc.constantFrom(...HEADER_VALUES), fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((n) => String.fromCharCode(n)), maxLength: 40 }));

const query = fc
  .array(fc.tuple(fc.constantFrom(...PARAMS), fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 6 }))), { maxLength: 4 })
  .map((ps) => (ps.length === 0 ? "" : "?" + ps.map(([k, v]) => `${k}=${/%/.test(v) ? v : encodeURIComponent(v)}`).join("&")));

/** Valid bodies of every writing route, to be sent as they are or mutated. */
const validBody = fc.oneof(
  oddJson({ lone: false }).map((data) => JSON.stringify({ data, tags: ["a"] })),
  fc.array(oddJson({ lone: true }), { minLength: 1, maxLength: 3 }).map((ds) => JSON.stringify(ds.map((data) => ({ data })))),
  fc.constant(JSON.stringify({ compare: [{ key: "a", target: "version", op: ">", value: 0 }], success: [{ op: "put", key: "a", value: "v" }, { op: "get", key: "a" }], failure: [{ op: "del", key: "a" }] })),
  fc.constant(JSON.stringify({ success: [{ op: "put", key: "b", value: { base64: "AAEC" }, contentType: "application/json" }] })),
  fc.constant(JSON.stringify({ to: "n2" })),
  fc.constant(JSON.stringify({})),
);

type Mut = { at: number; kind: "delete" | "insert" | "replace"; text: string };
const textMutation = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom("delete" as const, "insert" as const, "replace" as const),
  text: fc.oneof(fc.constantFrom("{", "}", "[", "]", '"', ",", ":", "\\", "\\u", "\\ud800", "null", "-", "1e999", "__proto__", '"__proto__":', "\u0000"), oddString(true)),
});

function mutateText(s: string, ms: Mut[]): string {
  let out = s;
  for (const m of ms) {
    const at = out.length === 0 ? 0 : m.at % out.length;
    if (m.kind === "delete") out = out.slice(0, at) + out.slice(at + 1 + (m.text.length % 4));
    else if (m.kind === "insert") out = out.slice(0, at) + m.text + out.slice(at);
    else out = out.slice(0, at) + m.text + out.slice(at + m.text.length);
  }
  return out;
}

const body = fc.oneof(
  fc.constant(undefined),
  validBody,
  fc.tuple(validBody, fc.array(textMutation, { minLength: 1, maxLength: 3 })).map(([b, ms]) => mutateText(b, ms)),
  fc.uint8Array({ maxLength: 64 }),
  oddJson({ lone: true }).map((v) => JSON.stringify(v)),
);

/** Each route with the method it takes (most requests), so that handlers are reached, not only 404/405. */
const ROUTES: [string, string][] = [
  ["POST", "/changes"], ["POST", "/changes"], ["POST", "/changes"], ["GET", "/changes"], ["GET", "/changes/stream"], ["GET", "/changes/1"],
  ["GET", "/kv"], ["GET", "/kv/a"], ["PUT", "/kv/a"], ["PUT", "/kv/a"], ["DELETE", "/kv/a"], ["POST", "/txn"], ["POST", "/txn"],
  ["GET", "/status"], ["GET", "/health"], ["GET", "/ready"], ["GET", "/metrics"], ["POST", "/admin/leader"], ["GET", "/checkpoints"],
  ["GET", "/checkpoints/x"], ["GET", "/"], ["HEAD", "/changes"], ["HEAD", "/changes/stream"],
];
const oddSegment = fc.string({ unit: fc.oneof(fc.constantFrom("%", "%zz", "%2F", "%ED%A0%80", "/", "..", "?"), fc.string({ maxLength: 2 })), maxLength: 5 });
const routeCall = fc.constantFrom(...ROUTES).chain(([method, path]) =>
  fc.oneof({ weight: 3, arbitrary: fc.constant([method, path] as const) }, { weight: 1, arbitrary: fc.tuple(fc.constant(method), oddSegment.map((seg) => path.replace(/[^/]+$/, "") + seg)) }),
);
const randomCall = fc.tuple(
  fc.constantFrom("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"),
  fc.oneof(fc.constantFrom(...PATHS), fc.constantFrom("/kv/", "/changes/", "/checkpoints/").chain((p) => fc.string({ maxLength: 10 }).map((s) => p + encodeURIComponent(s)))),
);
const headers = fc.tuple(fc.boolean(), fc.array(fc.tuple(fc.constantFrom(...HEADERS), headerValue), { maxLength: 4 })).map(([json, hs]) =>
  json ? [["content-type", "application/json"] as [string, string], ...hs.filter(([k]) => k !== "content-type")] : hs,
);
const request = fc.record({ call: fc.oneof({ weight: 4, arbitrary: routeCall }, { weight: 1, arbitrary: randomCall }), query, headers, body }).map(({ call, ...r }) => ({
  method: call[0],
  path: call[1],
  ...r,
}));

type Req = { method: string; path: string; query: string; headers: [string, string][]; body: string | Uint8Array | undefined };

async function send(r: Req, to = app): Promise<Response> {
  const headers = new Headers();
  for (const [k, v] of r.headers) headers.append(k, v);
  const withBody = r.body !== undefined && r.method !== "GET" && r.method !== "HEAD";
  return await to.request(`http://cairn.test${r.path}${r.query}`, { method: r.method, headers, ...(withBody ? { body: r.body as BodyInit } : {}) });
}

/** The property: no 500, JSON error shape for every error, streams cancelled. */
async function checkOne(r: Req, to = app): Promise<void> {
  const res = await send(r, to);
  if (process.env.CAIRN_FUZZ_STATS) statusCounts.set(`${r.method} ${res.status}`, (statusCounts.get(`${r.method} ${res.status}`) ?? 0) + 1);
  const ctx = `${r.method} ${r.path}${r.query} -> ${res.status}`;
  expect({ ctx, serverError: res.status >= 500 && res.status !== 503 && res.status !== 504 }).toEqual({ ctx, serverError: false });
  if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    await res.body?.cancel();
    return;
  }
  const text = await res.text();
  if (res.status >= 400 && r.method !== "HEAD") {
    expect({ ctx, type: res.headers.get("content-type") }).toEqual({ ctx, type: expect.stringContaining("application/json") });
    const b = JSON.parse(text);
    expect({ ctx, code: typeof b.error?.code, message: typeof b.error?.message }).toEqual({ ctx, code: "string", message: "string" });
  }
}

const statusCounts = new Map<string, number>();

async function expectServing(): Promise<void> {
  await waitFor("the node leads again", () => h.node.status().role === "leader", 15_000);
  const res = await app.request("/changes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ data: { alive: true } }) });
  expect(res.status).toBe(201);
  const { index } = await res.json();
  expect((await (await app.request(`/changes/${index}`)).json()).data).toEqual({ alive: true });
  expect((await app.request("/health")).status).toBe(200);
}

describe("API fuzz", () => {
  test(
    "random and mutated requests on every route: no 500, JSON errors, no unhandled rejection, and the node keeps serving",
    async () => {
      await fc.assert(fc.asyncProperty(request, (r) => checkOne(r)), fuzzParams(400));
      if (process.env.CAIRN_FUZZ_STATS) console.log([...statusCounts].sort());
      await expectServing();
      expect(rejections).toEqual([]);
      expect(h.logs.filter((l) => l.includes('"API request failed"'))).toEqual([]);
    },
    fuzzTimeoutMs(400, 30),
  );

  test(
    "the same with authentication on: 401/403/429 are the JSON error shape too, and nothing else changes",
    async () => {
      statusCounts.clear();
      // Mostly with a real token of some role, so that requests get past authentication.
      const authed = fc.tuple(request, fc.constantFrom(null, "tok-r", "tok-w", "tok-a", "tok-a")).map(([r, t]) =>
        t === null ? r : { ...r, headers: [["authorization", `Bearer ${t}`] as [string, string], ...r.headers.filter(([k]) => k !== "authorization")] },
      );
      await fc.assert(fc.asyncProperty(authed, (r) => checkOne(r, authApp)), fuzzParams(300));
      if (process.env.CAIRN_FUZZ_STATS) console.log([...statusCounts].sort());
      await expectServing();
      expect(rejections).toEqual([]);
      expect(h.logs.filter((l) => l.includes('"API request failed"'))).toEqual([]);
    },
    fuzzTimeoutMs(300, 30),
  );
});

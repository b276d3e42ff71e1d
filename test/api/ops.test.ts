import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../../src/api/app.ts";
import type { NodeApi } from "../../src/node/api.ts";
import { NoLeaderError, TimeoutError } from "../../src/node/errors.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { inprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";
import { authWith, bodyOf, jsonInit, metricValue, singleNode, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => {
  await h.close();
});

/** The node with some methods replaced (to provoke failures the real node shows only under faults). */
function withOverrides(node: NodeApi, over: Partial<Record<keyof NodeApi, unknown>>): NodeApi {
  return new Proxy(node, {
    get(target, p, recv) {
      if (p in over) return over[p as keyof NodeApi];
      const v = Reflect.get(target, p, recv);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

describe("operations", () => {
  test("GET /status is the node's view", async () => {
    const res = await h.req("/status");
    expect(res.status).toBe(200);
    const s = await bodyOf(res);
    expect(s).toMatchObject({ id: "n1", role: "leader", leader: { id: "n1" }, index: { commit: expect.any(Number) } });
    expect(s.members[0]).toMatchObject({ id: "n1", role: "voter" });
  });

  test("GET /health is 200 ok; GET /ready is 200 when ready, 503 with the reason and Retry-After when not", async () => {
    expect(await bodyOf(await h.req("/health"))).toMatchObject({ ok: true, id: "n1" });
    const ready = await h.req("/ready");
    expect(ready.status).toBe(200);
    expect((await bodyOf(ready)).ready).toBe(true);
    const notReady = createApp({ node: withOverrides(h.node, { readiness: () => ({ ready: false, reason: "catching up: applied 3 of 9" }) }), logger: memoryLogger().log, version: "t" });
    const res = await notReady.request("/ready");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(await bodyOf(res)).toMatchObject({ error: { code: "not_ready" }, ready: false, reason: "catching up: applied 3 of 9" });
  });

  test("GET /metrics has the node's metrics and HTTP counters by route and status, and a latency histogram", async () => {
    await h.req("/kv/metric-probe");
    await h.req("/kv/metric-probe");
    const res = await h.req("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const nodeFirstLine = h.node.metricsText().split("\n")[0]!;
    expect(text).toContain(nodeFirstLine);
    expect(metricValue(text, 'cairn_http_requests_total{method="GET",route="/kv/:key",status="404"}')).toBe(2);
    expect(text).toContain('cairn_http_request_duration_seconds_bucket{method="GET",route="/kv/:key",le="+Inf"} 2');
    expect(text).toContain("# TYPE cairn_http_request_duration_seconds histogram");
  });

  test("POST /admin/leader on a single node is 400: there is no other voter", async () => {
    const res = await h.req("/admin/leader", { method: "POST" });
    expect(res.status).toBe(400);
    expect((await bodyOf(res)).error.message).toContain("no other voter");
    const bad = await h.req("/admin/leader", jsonInit("POST", { to: 5 }));
    expect(bad.status).toBe(400);
  });

  test("POST /admin/checkpoint builds one; GET /checkpoints lists it; GET /checkpoints/ID downloads it with its SHA-256", async () => {
    const put = await h.req("/kv/ck", { method: "PUT", body: "v", headers: { "content-type": "text/plain" } });
    expect(put.status).toBeLessThan(300);
    const made = await bodyOf(await h.req("/admin/checkpoint", { method: "POST" }));
    const { id, sha256, bytes: size } = made.checkpoint as { id: string; sha256: string; bytes: number };
    expect(id).toMatch(/^ckpt-\d{12}$/);
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(made.checkpoint.index).toBeGreaterThan(0);
    const list = await bodyOf(await h.req("/checkpoints"));
    expect(list.checkpoints[0].id).toBe(id);
    const file = await h.req(`/checkpoints/${id}`);
    expect(file.status).toBe(200);
    expect(file.headers.get("x-checksum-sha256")).toBe(sha256);
    const bytes = new Uint8Array(await file.arrayBuffer());
    expect(bytes.byteLength).toBe(size);
    expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(sha256);
    expect(new TextDecoder().decode(bytes.subarray(0, 15))).toBe("SQLite format 3");
    const missing = await h.req("/checkpoints/ckpt-999999999999");
    expect(missing.status).toBe(404);
    expect((await bodyOf(missing)).error.code).toBe("not_found");
  });

  test("GET / is a self-contained HTML dashboard that polls /status", async () => {
    const res = await h.req("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/html");
    const html = await res.text();
    expect(html).toContain("<!doctype html>");
    expect(html).toContain('fetch("status"');
    expect(html).not.toMatch(/(src|href)=["']https?:/);
  });

  test("unknown routes are 404 JSON; known paths with another method 405 with Allow", async () => {
    const res = await h.req("/nope/nothing");
    expect(res.status).toBe(404);
    expect((await bodyOf(res)).error.code).toBe("not_found");
    const m = await h.req("/txn");
    expect(m.status).toBe(405);
    expect(m.headers.get("allow")).toBe("POST");
    expect((await bodyOf(m)).error.code).toBe("method_not_allowed");
  });
});

describe("failures of the node", () => {
  test("no leader: writes and linearizable reads are 503 with Retry-After; stale reads still answer", async () => {
    const node = withOverrides(h.node, {
      propose: () => Promise.reject(new NoLeaderError()),
      readBarrier: () => Promise.reject(new TimeoutError("the read barrier", 50)),
    });
    const app = createApp({ node, logger: memoryLogger().log, version: "t" });
    const w = await app.request("/changes", jsonInit("POST", { data: 1 }));
    expect(w.status).toBe(503);
    expect(w.headers.get("retry-after")).toBe("1");
    expect((await bodyOf(w)).error.code).toBe("no_leader");
    const r = await app.request("/kv/x");
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).not.toBeNull();
    expect((await app.request("/changes?consistency=stale")).status).toBe(200);
  });

  test("a node call that never answers is cut off by the API's own deadline", async () => {
    const node = withOverrides(h.node, { propose: () => new Promise(() => {}) });
    const app = createApp({ node, logger: memoryLogger().log, version: "t", limits: { writeTimeoutMs: 50 } });
    const start = Date.now();
    const res = await app.request("/kv/hang", { method: "PUT", body: "x" });
    expect(res.status).toBe(503);
    expect((await bodyOf(res)).error.code).toBe("timeout");
    expect(Date.now() - start).toBeLessThan(3000);
  });

  test("a feed wait the node refuses at once ends the long poll and the stream instead of spinning", async () => {
    let calls = 0;
    const node = withOverrides(h.node, { waitForFeed: () => (calls++, Promise.resolve(false)) });
    const app = createApp({ node, logger: memoryLogger().log, version: "t" });
    const last = h.node.fsm.feedState().last;
    const start = Date.now();
    const res = await app.request(`/changes?since=${last}&block=5`);
    expect(res.status).toBe(200);
    expect((await bodyOf(res)).changes).toEqual([]);
    expect(Date.now() - start).toBeLessThan(1000);
    expect(calls).toBe(1);
    const stream = await app.request(`/changes/stream?since=${last}`);
    const reader = stream.body!.getReader();
    let done = false;
    while (!done) done = (await reader.read()).done;
    expect(calls).toBe(2);
  });

  test("an unexpected exception is 500 with an error id that the log has too", async () => {
    const { log, lines } = memoryLogger();
    const node = withOverrides(h.node, { status: () => { throw new RangeError("status exploded"); } });
    const res = await createApp({ node, logger: log, version: "t" }).request("/status");
    expect(res.status).toBe(500);
    const b = await bodyOf(res);
    expect(b.error.code).toBe("internal");
    const id = /internal error (\S+):/.exec(b.error.message)![1]!;
    expect(lines.some((l) => l.includes(id) && l.includes("status exploded"))).toBe(true);
    expect(b.error.message).not.toContain("status exploded");
  });

  test("a node with no quorum (1 of 3 started) answers writes with 503 within the deadline, never hangs", async () => {
    const c = await inprocCluster(["n1", "n2", "n3"]);
    try {
      const node = await c.start("n1");
      const app = createApp({ node, logger: memoryLogger().log, version: "t", limits: { writeTimeoutMs: 500, readTimeoutMs: 500 } });
      const start = Date.now();
      const w = await app.request("/changes", jsonInit("POST", { data: 1 }));
      expect(w.status).toBe(503);
      expect(w.headers.get("retry-after")).not.toBeNull();
      const r = await app.request("/changes");
      expect(r.status).toBe(503);
      expect(Date.now() - start).toBeLessThan(5000);
      expect((await app.request("/ready")).status).toBe(503);
      expect((await app.request("/health")).status).toBe(200);
    } finally {
      await c.close();
    }
  }, 30_000);
});

describe("bearer tokens", () => {
  const tokens = { read: ["reader"], write: ["writer"], admin: ["root"] };
  const auth = (t: string) => ({ authorization: `Bearer ${t}` });

  test("401 with WWW-Authenticate without a token, 403 with too low a role, /health open", async () => {
    const app = h.appWith({ auth: authWith(tokens) });
    const none = await app.request("/status");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    expect((await bodyOf(none)).error.code).toBe("unauthorized");
    expect((await app.request("/status", { headers: auth("wrong") })).status).toBe(401);
    expect((await app.request("/status", { headers: auth("reader") })).status).toBe(200);
    const readerWrites = await app.request("/changes", jsonInit("POST", { data: 1 }, auth("reader")));
    expect(readerWrites.status).toBe(403);
    expect((await bodyOf(readerWrites)).error.code).toBe("forbidden");
    expect((await app.request("/changes", jsonInit("POST", { data: 1 }, auth("writer")))).status).toBe(201);
    expect((await app.request("/changes", jsonInit("POST", { data: 1 }, auth("root")))).status).toBe(201);
    expect((await app.request("/admin/leader", { method: "POST", headers: auth("writer") })).status).toBe(403);
    expect((await app.request("/admin/leader", { method: "POST", headers: auth("root") })).status).toBe(400);
    expect((await app.request("/health")).status).toBe(200);
    expect((await app.request("/")).status).toBe(200);
    expect((await app.request("/metrics")).status).toBe(401);
  });
});

describe("a three-node cluster (in process)", () => {
  test("a write through a follower's API is forwarded; POST /admin/leader hands leadership over", async () => {
    const c = await inprocCluster(["n1", "n2", "n3"]);
    try {
      await Promise.all(["n1", "n2", "n3"].map((id) => c.start(id)));
      const leader = await c.leader();
      await waitFor("three voters", () => leader.status().members.filter((m) => m.role === "voter").length === 3, 15_000);
      const follower = [...c.nodes.values()].find((n) => n !== leader)!;
      const app = createApp({ node: follower, logger: memoryLogger().log, version: "t" });
      const w = await app.request("/kv/fwd", { method: "PUT", body: "v", headers: { "content-type": "text/plain" } });
      expect(w.status).toBe(200);
      expect(await (await app.request("/kv/fwd")).text()).toBe("v");
      // On the leader's API: forwarded from a follower, the node (not the API) may
      // report the transfer as lost when the leader changes under the call.
      const onLeader = createApp({ node: leader, logger: memoryLogger().log, version: "t" });
      const t = await onLeader.request("/admin/leader", jsonInit("POST", { to: follower.id }));
      const tb = await bodyOf(t);
      expect([t.status, tb]).toEqual([200, { from: leader.id, to: follower.id }]);
      expect(tb).toEqual({ from: leader.id, to: follower.id });
      await waitFor("the follower leads", () => follower.status().role === "leader", 10_000);
    } finally {
      await c.close();
    }
  }, 60_000);
});

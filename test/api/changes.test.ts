import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CHANGE_DATA_BYTES_MAX } from "../../src/statemachine/limits.ts";
import { waitFor } from "../helpers/ports.ts";
import { bodyOf, jsonInit, metricValue, parseSse, readSseUntil, singleNode, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => {
  await h.close();
});

const post = (body: unknown, headers: Record<string, string> = {}, query = "") => h.req(`/changes${query}`, jsonInit("POST", body, headers));
const lastIndex = () => h.node.fsm.feedState().last;

describe("POST /changes", () => {
  test("one change answers 201 with index, last, term, ts once applied", async () => {
    const res = await post({ data: { hello: "world" }, tags: ["greeting"] });
    expect(res.status).toBe(201);
    const b = await bodyOf(res);
    expect(Object.keys(b).sort()).toEqual(["index", "last", "term", "ts"]);
    expect(b.index).toBe(b.last);
    expect(h.node.fsm.getChange(b.index)).toMatchObject({ data: { hello: "world" }, tags: ["greeting"] });
  });

  test("an array is one atomic batch with consecutive indexes", async () => {
    const res = await post([{ data: 1 }, { data: "two", tags: ["t"] }, { data: null }]);
    expect(res.status).toBe(201);
    const b = await bodyOf(res);
    expect(b.last - b.index).toBe(2);
    expect([b.index, b.index + 1, b.index + 2].map((i) => h.node.fsm.getChange(i)?.data)).toEqual([1, "two", null]);
  });

  test("a repeated Idempotency-Key returns the first answer with replayed: true and appends nothing", async () => {
    const key = `idem-${crypto.randomUUID()}`;
    const first = await bodyOf(await post({ data: { n: 1 } }, { "idempotency-key": key }));
    const before = lastIndex();
    const again = await post({ data: { n: 2 } }, { "idempotency-key": key });
    expect(again.status).toBe(201);
    expect(await bodyOf(again)).toEqual({ ...first, replayed: true });
    expect(lastIndex()).toBe(before);
    expect(h.node.fsm.getChange(first.index)?.data).toEqual({ n: 1 });
  });

  test("?wait=none answers 202 once the leader accepted it; the change is applied soon after", async () => {
    const res = await post({ data: { async: true }, tags: ["wait-none"] }, {}, "?wait=none");
    expect(res.status).toBe(202);
    const b = await bodyOf(res);
    expect(b.status).toBe("accepted");
    expect(b.raftIndex).toBeGreaterThan(0);
    expect(b.term).toBeGreaterThan(0);
    await waitFor("the accepted change is applied", () => h.node.fsm.listChanges({ tags: ["wait-none"] }).changes.length === 1);
  });

  test("malformed JSON is 400 bad_json with the parser's message", async () => {
    const res = await h.req("/changes", { method: "POST", headers: { "content-type": "application/json" }, body: '{"data": [1, 2' });
    expect(res.status).toBe(400);
    const b = await bodyOf(res);
    expect(b.error.code).toBe("bad_json");
    expect(b.error.message).toContain("not valid JSON");
  });

  test("a wrong or missing Content-Type is 415; +json types are accepted", async () => {
    const text = await h.req("/changes", { method: "POST", headers: { "content-type": "text/plain" }, body: '{"data": 1}' });
    expect(text.status).toBe(415);
    expect((await bodyOf(text)).error.code).toBe("unsupported_media_type");
    const none = await h.req("/changes", { method: "POST", body: new TextEncoder().encode('{"data": 1}') });
    expect(none.status).toBe(415);
    const plusJson = await h.req("/changes", { method: "POST", headers: { "content-type": "application/vnd.cairn+json; charset=utf-8" }, body: '{"data": 1}' });
    expect(plusJson.status).toBe(201);
  });

  test("a body over bodyBytesMax is 413, by Content-Length and while reading a chunked body", async () => {
    const small = h.appWith({ bodyBytesMax: 1000 });
    const big = JSON.stringify({ data: "x".repeat(2000) });
    const declared = await small.request("/changes", { method: "POST", headers: { "content-type": "application/json" }, body: big });
    expect(declared.status).toBe(413);
    expect((await bodyOf(declared)).error.code).toBe("too_large");
    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 100) c.enqueue(bytes.slice(i, i + 100));
        c.close();
      },
    });
    const chunked = await small.request("/changes", { method: "POST", headers: { "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit);
    expect(chunked.status).toBe(413);
  });

  test("change data over the state machine's limit is 413", async () => {
    const res = await post({ data: "x".repeat(CHANGE_DATA_BYTES_MAX + 10) });
    expect(res.status).toBe(413);
    expect((await bodyOf(res)).error.message).toContain("over");
  });

  test("bad shapes are 400 and name the field", async () => {
    const cases: [unknown, string][] = [
      [{ tags: ["a"] }, "data"],
      [{ data: 1, tags: "a" }, "tags"],
      [{ data: 1, tag: ["a"] }, "tag"],
      [[], "empty"],
      [[{ data: 1 }, 5], "[1]"],
      [{ data: 1, tags: [""] }, "tag"],
    ];
    for (const [body, needle] of cases) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect((await bodyOf(res)).error.message).toContain(needle);
    }
  });

  test("a batch over BATCH_ITEMS_MAX is 413", async () => {
    const res = await post(Array.from({ length: 1001 }, () => ({ data: 0 })));
    expect(res.status).toBe(413);
  });
});

describe("GET /changes", () => {
  test("since, limit and next page through the feed", async () => {
    const base = lastIndex();
    await post(Array.from({ length: 5 }, (_, i) => ({ data: { page: i } })));
    const a = await bodyOf(await h.req(`/changes?since=${base}&limit=3`));
    expect(a.changes.map((c: { data: { page: number } }) => c.data.page)).toEqual([0, 1, 2]);
    expect(a.atEnd).toBe(false);
    expect(a.next).toBe(base + 3);
    expect(Object.keys(a.changes[0]).sort()).toEqual(["data", "index", "tags", "term", "ts"]);
    const b = await bodyOf(await h.req(`/changes?since=${a.next}&limit=3`));
    expect(b.changes.map((c: { data: { page: number } }) => c.data.page)).toEqual([3, 4]);
    expect(b.atEnd).toBe(true);
    expect(b).toMatchObject({ first: 1, last: base + 5, atStart: false, next: base + 5 });
  });

  test("repeated tag= filters on any of the tags", async () => {
    const base = lastIndex();
    await post([{ data: 1, tags: ["red"] }, { data: 2, tags: ["blue"] }, { data: 3, tags: ["green"] }, { data: 4, tags: ["red", "blue"] }]);
    const b = await bodyOf(await h.req(`/changes?since=${base}&tag=red&tag=blue`));
    expect(b.changes.map((c: { data: number }) => c.data)).toEqual([1, 2, 4]);
  });

  test("since_ts starts at the first change at or after that time (ms or ISO)", async () => {
    const t0 = Date.now();
    await post({ data: "after-t0", tags: ["ts-test"] });
    const ms = await bodyOf(await h.req(`/changes?since_ts=${t0}&tag=ts-test`));
    expect(ms.changes.map((c: { data: string }) => c.data)).toEqual(["after-t0"]);
    const iso = await bodyOf(await h.req(`/changes?since_ts=${encodeURIComponent(new Date(t0 + 60_000).toISOString())}&tag=ts-test`));
    expect(iso.changes).toEqual([]);
  });

  test("bad parameters are 400", async () => {
    for (const q of ["limit=0", "limit=1001", "since=-1", "since=abc", "tag=", "block=x", "consistency=maybe", "since_ts=never"]) {
      const res = await h.req(`/changes?${q}`);
      expect(res.status).toBe(400);
      expect((await bodyOf(res)).error.code).toMatch(/bad_request|invalid_query/);
    }
    const tooManyTags = Array.from({ length: 17 }, (_, i) => `tag=t${i}`).join("&");
    expect((await h.req(`/changes?${tooManyTags}`)).status).toBe(400);
  });

  test("?consistency=stale skips the read barrier and reports staleness", async () => {
    const res = await h.req("/changes?consistency=stale&limit=1");
    expect(res.status).toBe(200);
    const b = await bodyOf(res);
    expect(b.staleness).toMatchObject({ applied: expect.any(Number), commit: expect.any(Number) });
    expect(JSON.parse(res.headers.get("x-cairn-staleness")!)).toEqual(b.staleness);
    const linear = await h.req("/changes?limit=1");
    expect((await bodyOf(linear)).staleness).toBeUndefined();
  });

  test("block with nothing new answers an empty page when the time is up", async () => {
    const since = lastIndex();
    const start = Date.now();
    const res = await h.req(`/changes?since=${since}&block=0.4`);
    const took = Date.now() - start;
    expect(res.status).toBe(200);
    const b = await bodyOf(res);
    expect(b.changes).toEqual([]);
    expect(b.next).toBe(since);
    expect(took).toBeGreaterThanOrEqual(350);
    expect(took).toBeLessThan(3000);
  });

  test("block answers as soon as a matching change is committed, skipping ones that do not match", async () => {
    const metrics = async () => metricValue(await (await h.req("/metrics")).text(), "cairn_http_waiting");
    const since = lastIndex();
    const start = Date.now();
    const pending = h.req(`/changes?since=${since}&block=10&tag=wake`);
    await waitFor("the long poll waits", async () => (await metrics()) === 1);
    await post({ data: "other", tags: ["not-wake"] });
    await waitFor("the long poll still waits after a change that does not match", async () => (await metrics()) === 1);
    await post({ data: "hit", tags: ["wake"] });
    const b = await bodyOf(await pending);
    expect(b.changes.map((c: { data: string }) => c.data)).toEqual(["hit"]);
    expect(Date.now() - start).toBeLessThan(5000);
  });

  test("a long poll (block=600, capped at 60 s) holds a waiting slot until a change comes, then frees it", async () => {
    const metrics = async () => metricValue(await (await h.req("/metrics")).text(), "cairn_http_waiting");
    const pending = h.req(`/changes?since=${lastIndex()}&block=600`);
    await waitFor("the long poll waits", async () => (await metrics()) === 1);
    await post({ data: "release" });
    expect((await pending).status).toBe(200);
    expect(await metrics()).toBe(0);
  });
});

describe("GET /changes/N", () => {
  test("one change, 404 past the end, 400 for a non-index", async () => {
    const { index } = await bodyOf(await post({ data: { one: 1 }, tags: ["single"] }));
    const res = await h.req(`/changes/${index}`);
    expect(res.status).toBe(200);
    expect(await bodyOf(res)).toMatchObject({ index, data: { one: 1 }, tags: ["single"] });
    const missing = await h.req(`/changes/${index + 1000}`);
    expect(missing.status).toBe(404);
    expect((await bodyOf(missing)).error.code).toBe("not_found");
    expect((await h.req("/changes/abc")).status).toBe(400);
    expect((await h.req("/changes/0")).status).toBe(400);
  });
});

describe("GET /changes/stream", () => {
  test("streams existing and new changes as SSE with id = index, then resumes with Last-Event-ID", async () => {
    const base = lastIndex();
    await post([{ data: "s1", tags: ["sse"] }, { data: "s2", tags: ["sse"] }]);
    const res = await h.req(`/changes/stream?since=${base}&tag=sse`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    const reader = res.body!.getReader();
    let text = await readSseUntil(reader, (t) => parseSse(t).length >= 2);
    await post({ data: "s3", tags: ["sse"] });
    text = await readSseUntil(reader, (t) => parseSse(t).length >= 3, 5000, text);
    const events = parseSse(text);
    expect(events.map((e) => e.event)).toEqual(["change", "change", "change"]);
    expect(events.map((e) => JSON.parse(e.data).data)).toEqual(["s1", "s2", "s3"]);
    expect(events.map((e) => Number(e.id))).toEqual([base + 1, base + 2, base + 3]);
    await reader.cancel();

    // Resume after the first event: Last-Event-ID wins over since.
    const resumed = await h.req(`/changes/stream?since=0&tag=sse`, { headers: { "last-event-id": String(base + 1) } });
    const r2 = resumed.body!.getReader();
    const again = parseSse(await readSseUntil(r2, (t) => parseSse(t).length >= 2));
    expect(again.map((e) => JSON.parse(e.data).data)).toEqual(["s2", "s3"]);
    await r2.cancel();
  });

  test("sends keepalive comments while nothing happens, and frees its slot when the client goes", async () => {
    const app = h.appWith({ limits: { sseKeepaliveMs: 100 } });
    const res = await app.request(`/changes/stream?since=${lastIndex()}`);
    const reader = res.body!.getReader();
    const text = await readSseUntil(reader, (t) => t.split(": keepalive\n\n").length >= 3, 3000);
    expect(parseSse(text)).toEqual([]);
    const gauge = async () => metricValue(await (await app.request("/metrics")).text(), "cairn_http_waiting");
    expect(await gauge()).toBe(1);
    await reader.cancel();
    await waitFor("the stream's slot is released", async () => (await gauge()) === 0);
  });

  test("a client that reads nothing is dropped after sseStallMs", async () => {
    const app = h.appWith({ limits: { sseKeepaliveMs: 50, sseStallMs: 200 } });
    const res = await app.request(`/changes/stream?since=0`);
    const gauge = async () => metricValue(await (await app.request("/metrics")).text(), "cairn_http_waiting");
    await waitFor("the stalled stream is dropped", async () => (await gauge()) === 0, 5000);
    const reader = res.body!.getReader();
    await expect((async () => { for (;;) if ((await reader.read()).done) return "ended"; })()).rejects.toThrow();
  });

  test("more waiting requests than waitsMax get 503 with Retry-After", async () => {
    const app = h.appWith({ limits: { waitsMax: 1 } });
    const first = await app.request(`/changes/stream?since=${lastIndex()}`);
    const second = await app.request(`/changes/stream?since=${lastIndex()}`);
    expect(second.status).toBe(503);
    expect(second.headers.get("retry-after")).toBe("1");
    expect((await bodyOf(second)).error.code).toBe("too_many_waiting");
    const poll = await app.request(`/changes?since=${lastIndex()}&block=5`);
    expect(poll.status).toBe(503);
    await first.body!.cancel();
  });

  test("HEAD on the stream answers the headers without opening a stream", async () => {
    const app = h.appWith({});
    const res = await app.request("/changes/stream", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    expect(metricValue(await (await app.request("/metrics")).text(), "cairn_http_waiting")).toBe(0);
  });

  test("the server's shutdown signal ends open streams", async () => {
    const shutdown = new AbortController();
    const app = h.appWith({ signal: shutdown.signal, limits: { sseKeepaliveMs: 60_000 } });
    const res = await app.request(`/changes/stream?since=${lastIndex()}`);
    const reader = res.body!.getReader();
    await readSseUntil(reader, (t) => t.includes("retry:"));
    shutdown.abort();
    const deadline = Date.now() + 3000;
    let done = false;
    while (!done && Date.now() < deadline) done = (await reader.read()).done;
    expect(done).toBe(true);
  });
});

describe("below the retained feed", () => {
  test("410 gone with resumeFrom (and checkpoint null) for since, /changes/N and the stream", async () => {
    const g = await singleNode();
    try {
      await g.req("/changes", jsonInit("POST", Array.from({ length: 10 }, (_, i) => ({ data: i }))));
      const last = g.node.fsm.feedState().last;
      g.node.fsm.trimFeed({ keepEntries: 3 });
      const first = last - 2;
      expect(g.node.fsm.firstRetained()).toBe(first);

      const gone = await g.req("/changes?since=2");
      expect(gone.status).toBe(410);
      const b = await bodyOf(gone);
      expect(b.error.code).toBe("gone");
      expect(b).toMatchObject({ checkpoint: null, resumeFrom: first - 1, first });

      const resume = await bodyOf(await g.req(`/changes?since=${b.resumeFrom}`));
      expect(resume.changes.length).toBe(3);
      expect(resume.atStart).toBe(true);
      const noSince = await bodyOf(await g.req("/changes"));
      expect(noSince.changes[0].index).toBe(first);

      expect((await g.req("/changes/2")).status).toBe(410);
      expect((await g.req(`/changes/stream?since=1`)).status).toBe(410);

      const withCheckpoint = g.appWith({ checkpoints: { latest: () => ({ id: "cp-9", index: last - 1 }) } });
      const cp = await bodyOf(await withCheckpoint.request("/changes?since=0"));
      expect(cp.checkpoint).toEqual({ id: "cp-9", index: last - 1 });
      expect(cp.resumeFrom).toBe(last - 1);
    } finally {
      await g.close();
    }
  }, 30_000);
});

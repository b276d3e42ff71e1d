import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { VALUE_BYTES_MAX } from "../../src/statemachine/limits.ts";
import { waitFor } from "../helpers/ports.ts";
import { bodyOf, jsonInit, singleNode, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => {
  await h.close();
});

const put = (key: string, body: BodyInit, headers: Record<string, string> = {}) => h.req(`/kv/${key}`, { method: "PUT", body, headers });

describe("PUT, GET, DELETE /kv/KEY", () => {
  test("a value is stored as is with its content type; GET returns it with ETag and X-Cairn-Version", async () => {
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const res = await put("bin", bytes, { "content-type": "application/x-thing" });
    expect(res.status).toBe(200);
    const b = await bodyOf(res);
    expect(Object.keys(b).sort()).toEqual(["index", "key", "term", "ts", "version"]);
    expect(b.key).toBe("bin");
    expect(b.index).toBe(b.version);
    expect(res.headers.get("etag")).toBe(`"${b.version}"`);
    const got = await h.req("/kv/bin");
    expect(got.status).toBe(200);
    expect(got.headers.get("content-type")).toBe("application/x-thing");
    expect(got.headers.get("etag")).toBe(`"${b.version}"`);
    expect(got.headers.get("x-cairn-version")).toBe(String(b.version));
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(bytes);
  });

  test("without a Content-Type the value is application/octet-stream", async () => {
    await put("noct", new TextEncoder().encode("raw"));
    expect((await h.req("/kv/noct")).headers.get("content-type")).toBe("application/octet-stream");
  });

  test("keys may hold slashes and escapes; an empty key is 400", async () => {
    expect((await put("a/b/c", "deep", { "content-type": "text/plain" })).status).toBe(200);
    expect(await (await h.req("/kv/a/b/c")).text()).toBe("deep");
    expect((await put("x%2Fy%20z", "esc", { "content-type": "text/plain" })).status).toBe(200);
    expect(h.node.fsm.get("x/y z")).not.toBeNull();
    expect(await (await h.req("/kv/x%2Fy%20z")).text()).toBe("esc");
    const empty = await put("", "v");
    expect(empty.status).toBe(400);
    expect((await bodyOf(empty)).error.message).toContain("empty");
    expect((await put("%E2%9C", "v")).status).toBe(400);
  });

  test("a missing key is 404 JSON for GET and DELETE", async () => {
    const get = await h.req("/kv/missing-key");
    expect(get.status).toBe(404);
    expect(await bodyOf(get)).toMatchObject({ error: { code: "not_found" }, key: "missing-key" });
    const del = await h.req("/kv/missing-key", { method: "DELETE" });
    expect(del.status).toBe(404);
  });

  test("DELETE answers the deleting change's index as version; the key is gone", async () => {
    const v1 = (await bodyOf(await put("gone", "x"))).version;
    const del = await h.req("/kv/gone", { method: "DELETE" });
    expect(del.status).toBe(200);
    const b = await bodyOf(del);
    expect(b.key).toBe("gone");
    expect(b.version).toBeGreaterThan(v1);
    expect(h.node.fsm.getChange(b.version)?.data).toEqual({ op: "del", key: "gone", version: b.version });
    expect((await h.req("/kv/gone")).status).toBe(404);
  });

  test("a value over VALUE_BYTES_MAX is 413", async () => {
    const res = await put("huge", new Uint8Array(VALUE_BYTES_MAX + 1));
    expect(res.status).toBe(413);
  });

  test("GET with If-None-Match of the current version is 304", async () => {
    const { version } = await bodyOf(await put("cached", "c"));
    const res = await h.req("/kv/cached", { headers: { "if-none-match": `"${version}"` } });
    expect(res.status).toBe(304);
    expect(res.headers.get("etag")).toBe(`"${version}"`);
    expect((await h.req("/kv/cached", { headers: { "if-none-match": `"${version - 1}"` } })).status).toBe(200);
  });

  test("HEAD answers the headers of GET", async () => {
    await put("head", "body", { "content-type": "text/plain" });
    const res = await h.req("/kv/head", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).not.toBeNull();
    expect(await res.text()).toBe("");
  });

  test("stale reads carry X-Cairn-Staleness", async () => {
    await put("stale", "s");
    const res = await h.req("/kv/stale?consistency=stale");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.headers.get("x-cairn-staleness")!)).toMatchObject({ applied: expect.any(Number) });
    expect((await h.req("/kv/stale")).headers.get("x-cairn-staleness")).toBeNull();
  });
});

describe("versions: If-Match and If-None-Match", () => {
  test("If-Match with the current version (plain or quoted) writes; a stale one is 412 with the current version", async () => {
    const v1 = (await bodyOf(await put("cas", "1"))).version;
    const ok = await put("cas", "2", { "if-match": `"${v1}"` });
    expect(ok.status).toBe(200);
    const v2 = (await bodyOf(ok)).version;
    expect((await put("cas", "3", { "if-match": String(v2) })).status).toBe(200);
    const stale = await put("cas", "4", { "if-match": String(v1) });
    expect(stale.status).toBe(412);
    const b = await bodyOf(stale);
    expect(b.error.code).toBe("compare_failed");
    expect(b.key).toBe("cas");
    expect(b.version).toBe(h.node.fsm.get("cas")!.version);
    expect(stale.headers.get("etag")).toBe(`"${b.version}"`);
    expect(await (await h.req("/kv/cas")).text()).toBe("3");
  });

  test("If-None-Match: * creates (201) or fails with 412 when the key exists", async () => {
    const created = await put("create-only", "a", { "if-none-match": "*" });
    expect(created.status).toBe(201);
    const again = await put("create-only", "b", { "if-none-match": "*" });
    expect(again.status).toBe(412);
    expect((await bodyOf(again)).version).toBe((await bodyOf(created)).version);
  });

  test("If-Match: 0 means absent; If-Match: * means present", async () => {
    expect((await put("m0", "a", { "if-match": "0" })).status).toBe(201);
    expect((await put("m0", "b", { "if-match": "0" })).status).toBe(412);
    const star = await put("m0", "c", { "if-match": "*" });
    expect(star.status).toBe(200);
    const b = await bodyOf(star);
    expect(b.key).toBe("m0");
    expect(star.headers.get("etag")).toBe(`"${b.version}"`);
    expect(h.node.fsm.get("m0")!.version).toBe(b.version);
    const absent = await put("never-there", "x", { "if-match": "*" });
    expect(absent.status).toBe(412);
    expect((await bodyOf(absent)).version).toBe(0);
  });

  test("a malformed If-Match is 400 bad_precondition and nothing is written", async () => {
    for (const bad of ['W/"1"', "one", '"1", "2"']) {
      const res = await put("bad-if", "x", { "if-match": bad });
      expect(res.status).toBe(400);
      expect((await bodyOf(res)).error.code).toBe("bad_precondition");
    }
    expect(h.node.fsm.get("bad-if")).toBeNull();
  });

  test("DELETE with a stale If-Match is 412; with the current one it deletes", async () => {
    const v = (await bodyOf(await put("del-cas", "x"))).version;
    expect((await h.req("/kv/del-cas", { method: "DELETE", headers: { "if-match": String(v + 100) } })).status).toBe(412);
    expect((await h.req("/kv/del-cas", { method: "DELETE", headers: { "if-match": `"${v}"` } })).status).toBe(200);
  });

  test("an Idempotency-Key makes a PUT retry return the first answer", async () => {
    const first = await bodyOf(await put("idem-kv", "1", { "idempotency-key": "kv-retry-1" }));
    const again = await put("idem-kv", "2", { "idempotency-key": "kv-retry-1" });
    expect(again.status).toBe(200);
    expect(await bodyOf(again)).toEqual({ ...first, replayed: true });
    expect(await (await h.req("/kv/idem-kv")).text()).toBe("1");
  });

  test("?wait=none on a PUT answers 202 accepted", async () => {
    const res = await h.req("/kv/async-kv?wait=none", { method: "PUT", body: "v" });
    expect(res.status).toBe(202);
    expect((await bodyOf(res)).status).toBe("accepted");
    await waitFor("the accepted put is applied", () => h.node.fsm.get("async-kv") !== null);
  });
});

describe("GET /kv?prefix=", () => {
  test("lists keys in order with values rendered as in the feed, paged with after/next", async () => {
    await put("list/a", '{"n":1}', { "content-type": "application/json" });
    await put("list/b", "text", { "content-type": "text/plain; charset=utf-8" });
    await put("list/c", new Uint8Array([1, 2, 3]), { "content-type": "application/octet-stream" });
    await put("listx", "other", { "content-type": "text/plain" });
    const all = await bodyOf(await h.req("/kv?prefix=list/"));
    expect(all.items).toEqual([
      { key: "list/a", version: expect.any(Number), contentType: "application/json", value: { n: 1 } },
      { key: "list/b", version: expect.any(Number), contentType: "text/plain; charset=utf-8", text: "text" },
      { key: "list/c", version: expect.any(Number), contentType: "application/octet-stream", base64: "AQID" },
    ]);
    expect(all.next).toBeUndefined();
    // The same rendering as the kv change in the feed.
    for (const it of all.items) {
      const { op: _op, ...fromFeed } = h.node.fsm.getChange(it.version)!.data as Record<string, unknown>;
      expect(fromFeed).toEqual(it);
    }
    const p1 = await bodyOf(await h.req("/kv?prefix=list/&limit=2"));
    expect(p1.items.map((i: { key: string }) => i.key)).toEqual(["list/a", "list/b"]);
    expect(p1.next).toBe("list/b");
    const p2 = await bodyOf(await h.req(`/kv?prefix=list/&limit=2&after=${encodeURIComponent(p1.next)}`));
    expect(p2.items.map((i: { key: string }) => i.key)).toEqual(["list/c"]);
  });

  test("bad limits are 400; stale lists report staleness", async () => {
    expect((await h.req("/kv?limit=0")).status).toBe(400);
    const stale = await bodyOf(await h.req("/kv?prefix=list/&consistency=stale"));
    expect(stale.staleness).toBeDefined();
  });
});

describe("kv writes are in the feed", () => {
  test("a PUT appears as a kv change", async () => {
    const { version } = await bodyOf(await put("watched", "w", { "content-type": "text/plain" }));
    const page = await bodyOf(await h.req(`/changes?since=${version - 1}&tag=kv&limit=1`));
    expect(page.changes[0]).toMatchObject({ index: version, tags: ["kv"], data: { op: "put", key: "watched", text: "w" } });
  });

  test("POST /kv is 405 with Allow; JSON routes reject other methods too", async () => {
    const res = await h.req("/kv", jsonInit("POST", {}));
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD");
  });
});

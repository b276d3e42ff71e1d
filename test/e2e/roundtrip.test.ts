/**
 * What goes in comes out, on the built binary: a 3-node TLS cluster takes
 * changes with prototype keys and unusual code points and every node's feed
 * (GET /changes/N, GET /changes, the SSE stream) returns them exactly; a
 * lone surrogate is refused with 400 before anything is appended.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { canonical, fuzzParams, hasLoneSurrogate, objectOf, oddJson } from "../helpers/fuzz.ts";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster } from "./harness.ts";

const IDS = ["n1", "n2", "n3"];
let c: E2ECluster;
beforeAll(async () => {
  c = await E2ECluster.init(3);
  for (const id of IDS) c.start(id);
  await c.waitVoters(3);
}, 90_000);
afterAll(async () => {
  await c?.close();
});

/** POSTs the raw text through the leader (retrying 503s: not acknowledged). */
async function postText(text: string): Promise<{ status: number; body: any }> {
  return await waitFor("an answer other than 503", async () => {
    const r = await c.json(await c.leader(), "/changes", { method: "POST", headers: { "content-type": "application/json" }, body: text });
    return r.status === 503 ? undefined : r;
  }, 30_000);
}

async function lastOn(id: string): Promise<number> {
  return (await c.status(id)).feed.last;
}

test("prototype keys and unusual code points come back exactly from every node's feed and stream", async () => {
  const datas: unknown[] = [
    objectOf([["__proto__", { polluted: true }], ["constructor", { prototype: { __proto__x: 1 } }], ["toString", "s"]]),
    { s: "\u{1f600}\ufffd\u2028\u0000\u{10ffff}e\u0301", n: [0, -1.5e-300, 1e300, 12345678901234567890] },
    [objectOf([["__proto__", []]]), { "": { " ": null } }],
  ];
  const sampled = fc.sample(oddJson({ lone: false }), { seed: 42, numRuns: 20 });
  const all = [...datas, ...sampled];
  const indexes: number[] = [];
  for (const d of all) {
    const r = await postText(JSON.stringify({ data: d, tags: ["rt"] }));
    expect(r.status).toBe(201);
    indexes.push(r.body.index);
  }
  for (const id of IDS) {
    await waitFor(`${id} applied them`, async () => (await lastOn(id)) >= indexes[indexes.length - 1]!, 20_000);
    for (const [i, index] of indexes.entries()) {
      const one = await c.json(id, `/changes/${index}?consistency=stale`);
      expect(canonical(one.body.data)).toBe(canonical(all[i]));
    }
    const page = await c.json(id, `/changes?since=${indexes[0]! - 1}&tag=rt&limit=1000&consistency=stale`);
    expect(page.body.changes.map((ch: { data: unknown }) => canonical(ch.data))).toEqual(all.map(canonical));
  }
  expect(Object.keys((await c.json("n2", `/changes/${indexes[0]}?consistency=stale`)).body.data)).toEqual(["__proto__", "constructor", "toString"]);

  const ctrl = new AbortController();
  const res = await c.get("n3", `/changes/stream?since=${indexes[0]! - 1}&tag=rt`, { signal: ctrl.signal });
  const reader = res.body!.getReader();
  let text = "";
  const dec = new TextDecoder();
  while ((text.match(/^event: change$/gm) ?? []).length < all.length) {
    const { done, value } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  ctrl.abort();
  await reader.cancel().catch(() => undefined);
  const streamed = text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => JSON.parse(l.slice(6)).data);
  expect(streamed.map(canonical)).toEqual(all.map(canonical));
}, 120_000);

test("a lone surrogate is refused with 400 and the JSON error shape on every node, and nothing is appended", async () => {
  const bad = fc.sample(oddJson({ lone: true }).filter(hasLoneSurrogate), { seed: 7, numRuns: 5 });
  const before = await lastOn(await c.leader());
  for (const d of [{ s: "\ud800" }, ...bad]) {
    for (const id of IDS) {
      const r = await c.json(id, "/changes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ data: d }) });
      expect(r.status).toBe(400);
      expect(typeof r.body.error.code).toBe("string");
      expect(r.body.error.message).toContain("unpaired surrogate");
    }
  }
  expect(await lastOn(await c.leader())).toBe(before);
}, 60_000);

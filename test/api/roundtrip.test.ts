/**
 * What goes in comes out: every change POST /changes acknowledges reads back
 * identical (as parsed JSON) from GET /changes/N, GET /changes, the SSE
 * stream and an Idempotency-Key replay; kv values and txn values read back
 * byte for byte; what cannot be kept exactly (lone surrogates, nesting past
 * the limit) is refused with 400 and the JSON error shape before anything is
 * appended. Property-tested over arbitrary JSON through the real API app.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { JSON_DEPTH_MAX } from "../../src/statemachine/limits.ts";
import { canonical, depthOf, fuzzParams, fuzzTimeoutMs, hasLoneSurrogate, objectOf, oddJson, oddString } from "../helpers/fuzz.ts";
import { waitFor } from "../helpers/ports.ts";
import { parseSse, readSseUntil, singleNode, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => {
  await h.close();
});

const lastIndex = () => h.node.fsm.feedState().last;
const postText = (text: string, headers: Record<string, string> = {}) =>
  retry503(() => h.req("/changes", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: text }));

/**
 * Retries a request answered 503 (no leader: on a loaded machine the node
 * steps down after an event-loop stall and is re-elected): a 503 is not an
 * acknowledgement, so only the final answer is checked.
 */
async function retry503(send: () => Promise<Response>, timeoutMs = 15_000): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await send();
    if (res.status !== 503 || Date.now() > deadline) return res;
    await res.body?.cancel();
    await waitFor("a leader", () => h.node.status().role === "leader", Math.max(1, deadline - Date.now())).catch(() => undefined);
  }
}

async function expectJsonError(res: Response, status: number): Promise<Record<string, any>> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const b = await res.json();
  expect(typeof b.error?.code).toBe("string");
  expect(typeof b.error?.message).toBe("string");
  return b;
}

/** POSTs one change; checks accepted => identical back, refused => 400 and nothing appended. */
async function roundTrip(data: unknown, tags: string[]): Promise<void> {
  const before = lastIndex();
  const res = await postText(JSON.stringify({ data, tags }));
  const refuse = hasLoneSurrogate(data) || hasLoneSurrogate(tags) || depthOf(data) > JSON_DEPTH_MAX || tags.includes("") ||
    tags.some((t) => new TextEncoder().encode(t).byteLength > 128);
  if (refuse) {
    await expectJsonError(res, 400);
    expect(lastIndex()).toBe(before);
    return;
  }
  if (res.status !== 201) throw new Error(`POST /changes answered ${res.status}: ${await res.text()}`);
  const { index } = await res.json();
  const one = await (await h.req(`/changes/${index}`)).text();
  expect(canonical(JSON.parse(one).data)).toBe(canonical(data));
  expect(JSON.parse(one).tags).toEqual(tags);
  const page = JSON.parse(await (await h.req(`/changes?since=${index - 1}&limit=1`)).text());
  expect(canonical(page.changes[0].data)).toBe(canonical(data));
}

describe("change data round trip", () => {
  test("__proto__, constructor and prototype keys come back exactly, at any depth", async () => {
    const text = '{"data": {"__proto__": {"x": 1}, "constructor": {"prototype": {"__proto__": null}}, "a": [{"__proto__": []}]}}';
    const res = await postText(text);
    expect(res.status).toBe(201);
    const { index } = await res.json();
    const back = JSON.parse(await (await h.req(`/changes/${index}`)).text());
    expect(JSON.stringify(back.data)).toBe(JSON.stringify(JSON.parse(text).data));
    expect(Object.keys(back.data)).toEqual(["__proto__", "constructor", "a"]);
  });

  test("a lone surrogate is refused with 400 naming its place in the body, and nothing is appended", async () => {
    const before = lastIndex();
    const b = await expectJsonError(await postText('{"data": {"a": ["ok", "x\\ud800"]}}'), 400);
    expect(b.error.message).toContain("data.a[1]");
    expect(b.error.message).toContain("U+D800");
    expect(b.path).toBe("data.a[1]");
    const k = await expectJsonError(await postText('[{"data": 1}, {"data": {"\\udfff": 1}}]'), 400);
    expect(k.error.message).toContain("[1].data");
    expect(k.path).toBe("[1].data");
    expect(lastIndex()).toBe(before);
  });

  test("a well-formed astral character and U+FFFD pass unchanged", async () => {
    await roundTrip({ s: "\ud83d\ude00\ufffd\u{10ffff}\u2028\u0000" }, ["\u{1f600}"]);
  });

  test("nesting within the limit is kept, past it refused with 400, and a body of 100000 levels is a 400, not a crash", async () => {
    const nest = (n: number): unknown => (n === 0 ? "leaf" : n % 2 ? [nest(n - 1)] : { __proto__x: nest(n - 1) });
    await roundTrip(nest(JSON_DEPTH_MAX), []);
    await roundTrip(nest(JSON_DEPTH_MAX + 1), []);
    const before = lastIndex();
    await expectJsonError(await postText(`{"data": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`), 400);
    expect(lastIndex()).toBe(before);
  });

  test(
    "property: arbitrary JSON with odd keys and code points is either kept exactly or refused with 400",
    async () => {
      const tags = fc.array(fc.oneof(fc.constantFrom("kv", "a", "__proto__"), oddString(true)), { maxLength: 3 });
      await fc.assert(fc.asyncProperty(oddJson({ lone: true }), tags, roundTrip), fuzzParams(150));
    },
    fuzzTimeoutMs(150, 50),
  );

  test(
    "property: fc.jsonValue round-trips exactly",
    async () => {
      await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), (v) => roundTrip(v, [])), fuzzParams(100));
    },
    fuzzTimeoutMs(100, 50),
  );

  test("the SSE stream and an Idempotency-Key replay return what was accepted", async () => {
    const since = lastIndex();
    const datas = [objectOf([["__proto__", { a: 1 }], ["constructor", "c"]]), { prototype: ["\u{1f600}", -0, 1e-300] }];
    const ids: number[] = [];
    for (const d of datas) {
      const res = await postText(JSON.stringify({ data: d }), { "idempotency-key": `rt-${ids.length}-${crypto.randomUUID()}` });
      expect(res.status).toBe(201);
      ids.push((await res.json()).index);
    }
    const ctrl = new AbortController();
    const res = await h.req(`/changes/stream?since=${since}`, { signal: ctrl.signal });
    const reader = res.body!.getReader();
    const text = await readSseUntil(reader, (t) => parseSse(t).filter((e) => e.event === "change").length >= datas.length);
    ctrl.abort();
    await reader.cancel().catch(() => undefined);
    const got = parseSse(text).filter((e) => e.event === "change").map((e) => JSON.parse(e.data).data);
    expect(got.map(canonical)).toEqual(datas.map(canonical));

    const key = `replay-${crypto.randomUUID()}`;
    const first = await (await postText(JSON.stringify({ data: datas[0] }), { "idempotency-key": key })).json();
    const again = await (await postText(JSON.stringify({ data: datas[0] }), { "idempotency-key": key })).json();
    expect(again).toEqual({ ...first, replayed: true });
  });
});

describe("kv and txn values round trip", () => {
  test(
    "property: a JSON kv value reads back byte for byte, and its feed change carries the same parsed value",
    async () => {
      await fc.assert(
        fc.asyncProperty(oddJson({ lone: true }), async (v) => {
          const body = new TextEncoder().encode(JSON.stringify(v));
          const put = await retry503(() => h.req("/kv/rt-json", { method: "PUT", headers: { "content-type": "application/json" }, body }));
          expect(put.status).toBe(200);
          const { version } = await put.json();
          const get = await h.req("/kv/rt-json");
          expect(new Uint8Array(await get.arrayBuffer())).toEqual(body);
          const change = JSON.parse(await (await h.req(`/changes/${version}`)).text());
          expect(canonical(change.data.value)).toBe(canonical(v));
          const list = JSON.parse(await (await h.req("/kv?prefix=rt-json")).text());
          expect(canonical(list.items[0].value)).toBe(canonical(v));
        }),
        fuzzParams(60),
      );
    },
    fuzzTimeoutMs(60, 60),
  );

  test(
    "property: a txn string value is stored as its UTF-8, or refused with 400 when it has a lone surrogate",
    async () => {
      await fc.assert(
        fc.asyncProperty(oddString(true), async (s) => {
          const before = lastIndex();
          const res = await retry503(() =>
            h.req("/txn", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ success: [{ op: "put", key: "rt-txn", value: s }, { op: "get", key: "rt-txn" }] }),
            }),
          );
          if (hasLoneSurrogate(s)) {
            const b = await expectJsonError(res, 400);
            expect(b.error.message).toContain("success[0].value");
            expect(lastIndex()).toBe(before);
            return;
          }
          expect(res.status).toBe(200);
          const b = JSON.parse(await res.text());
          expect(b.results[1].text).toBe(s);
          const get = await h.req("/kv/rt-txn");
          expect(new Uint8Array(await get.arrayBuffer())).toEqual(new TextEncoder().encode(s));
        }),
        fuzzParams(60),
      );
    },
    fuzzTimeoutMs(60, 60),
  );
});

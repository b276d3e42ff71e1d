import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { bodyOf, jsonInit, singleNode, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => {
  await h.close();
});

const txn = (body: unknown, headers: Record<string, string> = {}) => h.req("/txn", jsonInit("POST", body, headers));

describe("POST /txn", () => {
  test("all compares hold: the success branch runs; puts, gets and dels answer in order", async () => {
    await h.req("/kv/t/a", { method: "PUT", body: "1", headers: { "content-type": "text/plain" } });
    const va = h.node.fsm.get("t/a")!.version;
    const res = await txn({
      compare: [
        { key: "t/a", target: "version", op: "=", value: va },
        { key: "t/b", target: "exists", value: false },
        { key: "t/a", target: "value", op: "=", value: "1" },
      ],
      success: [
        { op: "put", key: "t/b", value: "two" },
        { op: "put", key: "t/c", value: { base64: "AAEC" } },
        { op: "put", key: "t/d", value: '{"j":true}', contentType: "application/json" },
        { op: "get", key: "t/d" },
        { op: "get", key: "t/none" },
        { op: "del", key: "t/a" },
      ],
      failure: [{ op: "put", key: "t/failed", value: "x" }],
    });
    expect(res.status).toBe(200);
    const b = await bodyOf(res);
    expect(b.succeeded).toBe(true);
    expect(b.results).toEqual([
      { op: "put", key: "t/b", version: expect.any(Number) },
      { op: "put", key: "t/c", version: expect.any(Number) },
      { op: "put", key: "t/d", version: expect.any(Number) },
      { op: "get", key: "t/d", found: true, version: expect.any(Number), contentType: "application/json", value: { j: true } },
      { op: "get", key: "t/none", found: false, version: 0 },
      { op: "del", key: "t/a", deleted: true, version: expect.any(Number) },
    ]);
    expect(b.last - b.index).toBe(3);
    expect(typeof b.term).toBe("number");
    expect(typeof b.ts).toBe("number");
    expect(h.node.fsm.get("t/b")!.contentType).toBe("text/plain; charset=utf-8");
    expect(h.node.fsm.get("t/c")!.value).toEqual(new Uint8Array([0, 1, 2]));
    expect(h.node.fsm.get("t/a")).toBeNull();
    expect(h.node.fsm.get("t/failed")).toBeNull();
  });

  test("a compare that fails runs the failure branch, still 200 with succeeded: false", async () => {
    const res = await txn({
      compare: [{ key: "t/b", target: "version", op: "=", value: 1 }],
      success: [{ op: "put", key: "t/nope", value: "x" }],
      failure: [{ op: "get", key: "t/b" }],
    });
    expect(res.status).toBe(200);
    const b = await bodyOf(res);
    expect(b.succeeded).toBe(false);
    expect(b.results).toEqual([{ op: "get", key: "t/b", found: true, version: expect.any(Number), contentType: "text/plain; charset=utf-8", text: "two" }]);
    expect(b.index).toBeUndefined();
    expect(h.node.fsm.get("t/nope")).toBeNull();
  });

  test("an empty txn is a no-op that succeeds", async () => {
    const b = await bodyOf(await txn({}));
    expect(b).toMatchObject({ succeeded: true, results: [] });
  });

  test("bad shapes are 400 naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ compare: [{ key: "k", target: "size", value: 1 }] }, "compare[0].target"],
      [{ success: [{ op: "incr", key: "k" }] }, "success[0]"],
      [{ success: [{ op: "put", key: "k" }] }, "success[0].value"],
      [{ success: [{ op: "put", key: "k", value: { base64: "!!" } }] }, "base64"],
      [{ compare: [], extra: 1 }, "extra"],
      [[], "body"],
      [{ compare: [{ key: "k", target: "exists", value: 3 }] }, "boolean"],
      [{ compare: [{ key: "k", target: "version", value: "3" }] }, "version"],
      [{ success: [{ op: "get", key: "" }] }, "key"],
    ];
    for (const [body, needle] of cases) {
      const res = await txn(body);
      expect(res.status).toBe(400);
      expect((await bodyOf(res)).error.message).toContain(needle);
    }
  });

  test("malformed JSON is 400, a wrong Content-Type 415", async () => {
    expect((await h.req("/txn", { method: "POST", headers: { "content-type": "application/json" }, body: "{" })).status).toBe(400);
    expect((await h.req("/txn", { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" })).status).toBe(415);
  });

  test("too many operations is 413", async () => {
    const res = await txn({ success: Array.from({ length: 129 }, (_, i) => ({ op: "get", key: `k${i}` })) });
    expect(res.status).toBe(413);
  });

  test("an Idempotency-Key replays the first result", async () => {
    const body = { success: [{ op: "put", key: "t/idem", value: "1" }] };
    const first = await bodyOf(await txn(body, { "idempotency-key": "txn-1" }));
    const again = await bodyOf(await txn({ success: [{ op: "put", key: "t/idem", value: "2" }] }, { "idempotency-key": "txn-1" }));
    expect(again).toEqual({ ...first, replayed: true });
    expect(new TextDecoder().decode(h.node.fsm.get("t/idem")!.value)).toBe("1");
  });
});

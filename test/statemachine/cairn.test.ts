import { afterEach, describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import type { Command, TxnResult } from "../../src/statemachine/commands.ts";
import { renderValue } from "../../src/api/encode.ts";
import { prefixUpperBound } from "../../src/statemachine/kv.ts";
import { InvalidQueryError } from "../../src/statemachine/feed.ts";
import { IDEM_TTL_MS, LIST_LIMIT_MAX, QUERY_TAGS_MAX } from "../../src/statemachine/limits.ts";
import { caught, TempDirs } from "../platform/testutil.ts";
import { bytes, Node } from "./harness.ts";

const tmp = new TempDirs();
const nodes: Node[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.close();
  tmp.cleanup();
});

function node(): Node {
  const n = new Node(tmp.make());
  nodes.push(n);
  return n;
}

const changes = (ts: number, ...items: [unknown, string[]][]): Command => ({
  op: "changes",
  items: items.map(([data, tags]) => ({ data: data as never, tags })),
  ts,
});
const put = (key: string, value: string, extra: Partial<Extract<Command, { op: "put" }>> = {}): Command => ({
  op: "put",
  key,
  value: bytes(value),
  contentType: "text/plain",
  ts: 1000,
  ...extra,
});

describe("change feed", () => {
  test("each change gets the next dense index; a batch is one result", () => {
    const n = node();
    n.term = 3;
    expect(n.apply(changes(100, [{ a: 1 }, ["x"]]))).toEqual({ index: 1, last: 1, term: 3, ts: 100 });
    expect(n.apply(changes(200, ["b", []], [null, ["y"]], [[1, 2], ["x", "y"]]))).toEqual({ index: 2, last: 4, term: 3, ts: 200 });
    expect(n.fsm.getChange(3)).toEqual({ index: 3, term: 3, ts: 200, data: null, tags: ["y"] });
    expect(n.fsm.getChange(5)).toBeNull();
  });

  test("change time never goes back: ts is max(command ts, previous ts)", () => {
    const n = node();
    n.applyAll([changes(500, [1, []]), changes(400, [2, []]), changes(600, [3, []])]);
    expect(n.fsm.listChanges({}).changes.map((c) => c.ts)).toEqual([500, 500, 600]);
  });

  test("since, limit, atEnd and next page through the feed", () => {
    const n = node();
    for (let i = 1; i <= 5; i++) n.apply(changes(i * 10, [i, []]));
    const p1 = n.fsm.listChanges({ limit: 2 });
    expect(p1).toMatchObject({ first: 1, last: 5, atStart: true, atEnd: false, next: 2 });
    expect(p1.changes.map((c) => c.data)).toEqual([1, 2]);
    const p2 = n.fsm.listChanges({ since: p1.next, limit: 2 });
    expect(p2).toMatchObject({ atStart: false, atEnd: false, next: 4 });
    const p3 = n.fsm.listChanges({ since: p2.next, limit: 2 });
    expect(p3.changes.map((c) => c.index)).toEqual([5]);
    expect(p3).toMatchObject({ atEnd: true, next: 5 });
    expect(n.fsm.listChanges({ since: 5 })).toMatchObject({ changes: [], atEnd: true, next: 5 });
    // Exactly `limit` left: atEnd is still known to be true.
    expect(n.fsm.listChanges({ since: 3, limit: 2 })).toMatchObject({ atEnd: true, next: 5 });
  });

  test("tags match any; next skips trailing changes that do not match", () => {
    const n = node();
    n.apply(changes(1, ["a", ["red"]], ["b", ["blue"]], ["c", ["red", "blue"]], ["d", ["green"]], ["e", []]));
    const page = n.fsm.listChanges({ tags: ["red", "blue"] });
    expect(page.changes.map((c) => c.data)).toEqual(["a", "b", "c"]);
    expect(page).toMatchObject({ atEnd: true, next: 5 });
    expect(n.fsm.listChanges({ tags: ["red"], limit: 1 })).toMatchObject({ atEnd: false, next: 1 });
    expect(n.fsm.listChanges({ tags: ["red"], since: 1 }).changes.map((c) => c.index)).toEqual([3]);
    expect(n.fsm.listChanges({ tags: ["none"] })).toMatchObject({ changes: [], atEnd: true, next: 5 });
  });

  test("sinceTs starts at the first change at or after that time", () => {
    const n = node();
    for (const ts of [100, 200, 200, 300]) n.apply(changes(ts, [ts, []]));
    expect(n.fsm.listChanges({ sinceTs: 200 }).changes.map((c) => c.index)).toEqual([2, 3, 4]);
    expect(n.fsm.listChanges({ sinceTs: 250 }).changes.map((c) => c.index)).toEqual([4]);
    expect(n.fsm.listChanges({ sinceTs: 301 })).toMatchObject({ changes: [], atEnd: true, next: 4 });
    expect(n.fsm.listChanges({ sinceTs: 0 }).changes).toHaveLength(4);
    // With both, the later start wins.
    expect(n.fsm.listChanges({ sinceTs: 100, since: 3 }).changes.map((c) => c.index)).toEqual([4]);
  });

  test("limit is capped at LIST_LIMIT_MAX", () => {
    const n = node();
    const items: [unknown, string[]][] = Array.from({ length: LIST_LIMIT_MAX / 2 + 5 }, (_, i) => [i, []]);
    n.applyAll([changes(1, ...items), changes(1, ...items)]);
    const page = n.fsm.listChanges({ limit: 10 * LIST_LIMIT_MAX });
    expect(page.changes).toHaveLength(LIST_LIMIT_MAX);
    expect(page.atEnd).toBe(false);
  });

  test("readers with the same query at the same feed bounds share one page; a new change or a trim gives a fresh one", () => {
    const n = node();
    n.applyAll([changes(1, ["a", ["t"]], ["b", ["u"]])]);
    const first = n.fsm.listChanges({ since: 0, tags: ["t"] });
    expect(n.fsm.listChanges({ since: 0, tags: ["t"] })).toBe(first); // shared, not re-read
    expect(Object.isFrozen(first) && Object.isFrozen(first.changes)).toBe(true);
    expect(n.fsm.listChanges({ since: 0, tags: ["u"] }).changes.map((c) => c.data)).toEqual(["b"]);
    n.applyAll([changes(2, ["c", ["t"]])]);
    const after = n.fsm.listChanges({ since: 0, tags: ["t"] });
    expect(after).not.toBe(first);
    expect(after.changes.map((c) => c.data)).toEqual(["a", "c"]);
    n.fsm.trimFeed({ keepEntries: 1 });
    expect(n.fsm.listChanges({ since: 0, tags: ["t"] }).changes.map((c) => c.data)).toEqual(["c"]);
  });

  test("a page stops early past LIST_BYTES_MAX; bad queries are InvalidQueryError", () => {
    const n = node();
    const big = "x".repeat(1_000_000);
    n.applyAll([changes(1, [big, []], [big, []], [big, []]), changes(1, [big, []], [big, []])]);
    const page = n.fsm.listChanges({});
    expect(page.changes.map((c) => c.index)).toEqual([1, 2, 3, 4]);
    expect(page).toMatchObject({ atEnd: false, next: 4 });
    expect(caught(() => n.fsm.listChanges({ tags: Array(QUERY_TAGS_MAX + 1).fill("t") }))).toBeInstanceOf(InvalidQueryError);
    expect(caught(() => n.fsm.listChanges({ limit: Number.NaN }))).toBeInstanceOf(InvalidQueryError);
  });

  test("retention by count and by age; atStart tells a reader it reached back past the retained start", () => {
    const n = node();
    for (let i = 1; i <= 10; i++) n.apply(changes(i * 1000, [i, ["t"]]));
    expect(n.fsm.trimFeed({ keepEntries: 7 })).toEqual({ first: 4, deleted: 3, more: false });
    expect(n.fsm.firstRetained()).toBe(4);
    expect(n.fsm.getChange(3)).toBeNull();
    const from0 = n.fsm.listChanges({ since: 0, limit: 2 });
    expect(from0).toMatchObject({ first: 4, last: 10, atStart: true });
    expect(from0.changes.map((c) => c.index)).toEqual([4, 5]);
    expect(n.fsm.listChanges({ since: 3 }).atStart).toBe(true);
    expect(n.fsm.listChanges({ since: 4 }).atStart).toBe(false);
    expect(n.fsm.listChanges({ since: 2, tags: ["t"] }).changes[0]!.index).toBe(4);
    // Age is measured back from the feed clock (10000), not the wall clock.
    expect(n.fsm.trimFeed({ keepAgeMs: 3000 })).toEqual({ first: 7, deleted: 3, more: false });
    expect(n.fsm.trimFeed({ keepAgeMs: 3000 })).toEqual({ first: 7, deleted: 0, more: false });
    // Trimming everything keeps the indexes going.
    n.fsm.trimFeed({ keepEntries: 0 });
    expect(n.fsm.listChanges({})).toMatchObject({ changes: [], first: 11, last: 10, atStart: true, atEnd: true, next: 10 });
    expect(n.apply(changes(20_000, ["new", []]))).toMatchObject({ index: 11 });
    expect(n.fsm.listChanges({}).first).toBe(11);
    expect(n.store.db.prepare("SELECT count(*) AS n FROM change_tags").get()).toEqual({ n: 0 });
  });
});

describe("key-value", () => {
  test("a put is readable, versioned by its feed index, and appears in the feed tagged kv", () => {
    const n = node();
    n.apply(changes(1, ["before", []]));
    expect(n.apply(put("a/b", "hello"))).toEqual({ op: "put", key: "a/b", version: 2, index: 2, term: 1, ts: 1000 });
    expect(n.fsm.get("a/b")).toEqual({ value: bytes("hello"), contentType: "text/plain", version: 2 });
    expect(n.fsm.getChange(2)).toEqual({
      index: 2, term: 1, ts: 1000, tags: ["kv"],
      data: { op: "put", key: "a/b", version: 2, contentType: "text/plain", text: "hello" },
    });
    expect(n.fsm.get("missing")).toBeNull();
  });

  test("feed data carries JSON values as JSON and binary values as base64", () => {
    const n = node();
    n.apply({ op: "put", key: "j", value: bytes('{"x":[1,2]}'), contentType: "application/json; charset=utf-8", ts: 1 });
    n.apply({ op: "put", key: "bad", value: bytes("{nope"), contentType: "application/json", ts: 1 });
    n.apply({ op: "put", key: "bin", value: new Uint8Array([0, 255, 1]), contentType: "application/octet-stream", ts: 1 });
    const data = n.fsm.listChanges({ tags: ["kv"] }).changes.map((c) => c.data);
    expect(data[0]).toMatchObject({ value: { x: [1, 2] } });
    expect(data[1]).toMatchObject({ base64: Buffer.from("{nope").toString("base64") });
    expect(data[2]).toMatchObject({ base64: "AP8B" });
  });

  test("If-Match compare-and-set and If-None-Match create-only", () => {
    const n = node();
    expect(n.apply(put("k", "v1", { ifNoneMatch: true }))).toMatchObject({ version: 1 });
    expect(n.apply(put("k", "v2", { ifNoneMatch: true }))).toEqual({ error: "compare_failed", key: "k", version: 1 });
    expect(n.apply(put("k", "v2", { ifMatch: 7 }))).toEqual({ error: "compare_failed", key: "k", version: 1 });
    expect(n.apply(put("k", "v2", { ifMatch: 1 }))).toMatchObject({ version: 2 });
    expect(n.apply(put("new", "x", { ifMatch: 0 }))).toMatchObject({ version: 3 });
    expect(n.fsm.get("k")!.value).toEqual(bytes("v2"));
    // A failed compare writes nothing to the feed.
    expect(n.fsm.feedState().last).toBe(3);
  });

  test("delete: with If-Match, of a missing key, and the feed record", () => {
    const n = node();
    n.apply(put("k", "v"));
    expect(n.apply({ op: "del", key: "k", ifMatch: 9, ts: 1 })).toEqual({ error: "compare_failed", key: "k", version: 1 });
    expect(n.apply({ op: "del", key: "k", ifMatch: 1, ts: 1 })).toMatchObject({ op: "del", key: "k", version: 2, index: 2 });
    expect(n.fsm.get("k")).toBeNull();
    expect(n.fsm.getChange(2)!.data).toEqual({ op: "del", key: "k", version: 2 });
    expect(n.apply({ op: "del", key: "k", ts: 1 })).toEqual({ error: "not_found", key: "k" });
    expect(n.fsm.feedState().last).toBe(2);
  });

  test("list by prefix, in key order, paged with after", () => {
    const n = node();
    for (const k of ["a", "app/1", "app/2", "app/3", "apq", "b", "app/😀", "app\u{10FFFF}"]) n.apply(put(k, k));
    const all = n.fsm.list({ prefix: "app/" });
    expect(all.items.map((i) => i.key)).toEqual(["app/1", "app/2", "app/3", "app/😀"]);
    expect(all.next).toBeUndefined();
    const p1 = n.fsm.list({ prefix: "app/", limit: 2 });
    expect(p1.items.map((i) => i.key)).toEqual(["app/1", "app/2"]);
    expect(p1.next).toBe("app/2");
    expect(n.fsm.list({ prefix: "app/", after: p1.next, limit: 2 }).items.map((i) => i.key)).toEqual(["app/3", "app/😀"]);
    expect(n.fsm.list({ prefix: "app" }).items.map((i) => i.key)).toEqual(["app/1", "app/2", "app/3", "app/😀", "app\u{10FFFF}"]);
    expect(n.fsm.list({}).items).toHaveLength(8);
    expect(prefixUpperBound("a\u{10FFFF}")).toBe("b");
    expect(prefixUpperBound("\u{10FFFF}")).toBeNull();
    expect(prefixUpperBound("\u{D7FF}")).toBe("\u{E000}");
  });
});

describe("txn", () => {
  test("all compares hold: the success ops run in order, atomically, as consecutive changes", () => {
    const n = node();
    n.apply(put("a", "1"));
    const r = n.apply({
      op: "txn",
      compare: [
        { key: "a", target: "version", op: "=", value: 1 },
        { key: "a", target: "value", op: "=", value: bytes("1") },
        { key: "b", target: "exists", op: "=", value: false },
      ],
      success: [
        { op: "put", key: "b", value: bytes("2"), contentType: "text/plain" },
        { op: "get", key: "b" },
        { op: "del", key: "a" },
        { op: "del", key: "zz" },
      ],
      failure: [{ op: "get", key: "a" }],
      ts: 5,
    }) as TxnResult;
    expect(r).toEqual({
      succeeded: true,
      results: [
        { op: "put", key: "b", version: 2 },
        { op: "get", key: "b", value: bytes("2"), contentType: "text/plain", version: 2 },
        { op: "del", key: "a", deleted: true, version: 3 },
        { op: "del", key: "zz", deleted: false, version: 0 },
      ],
      index: 2,
      last: 3,
      term: 1,
      ts: 1000, // the feed clock never goes back: the put before had ts 1000
    });
  });

  test("a compare that fails runs the failure ops and writes nothing else", () => {
    const n = node();
    n.apply(put("a", "abc"));
    const cmd = (compare: Extract<Command, { op: "txn" }>["compare"]): Command => ({
      op: "txn",
      compare,
      success: [{ op: "put", key: "a", value: bytes("won"), contentType: "text/plain" }],
      failure: [{ op: "get", key: "a" }],
      ts: 5,
    });
    const failed = n.apply(cmd([{ key: "a", target: "version", op: ">", value: 1 }])) as TxnResult;
    expect(failed.succeeded).toBe(false);
    expect(failed.results).toEqual([{ op: "get", key: "a", value: bytes("abc"), contentType: "text/plain", version: 1 }]);
    expect(failed.index).toBeUndefined();
    expect(n.fsm.feedState().last).toBe(1);
    const ok = (c: Extract<Command, { op: "txn" }>["compare"][number]) => (n.apply(cmd([c])) as TxnResult).succeeded;
    expect(ok({ key: "a", target: "value", op: "<", value: bytes("abd") })).toBe(true);
    expect(ok({ key: "a", target: "value", op: ">", value: bytes("won") })).toBe(false);
    expect(ok({ key: "a", target: "value", op: "!=", value: bytes("x") })).toBe(true);
    expect(ok({ key: "nope", target: "value", op: "!=", value: bytes("x") })).toBe(false); // absent: value compares never hold
    expect(ok({ key: "nope", target: "version", op: "=", value: 0 })).toBe(true);
    expect(ok({ key: "a", target: "exists", op: "!=", value: false })).toBe(true);
  });
});

describe("idempotency", () => {
  test("a repeated key returns the first result and changes nothing", () => {
    const n = node();
    const first = n.apply({ ...changes(1, ["x", []]), idem: "req-1" });
    expect(first).toEqual({ index: 1, last: 1, term: 1, ts: 1 });
    const again = n.apply({ ...changes(2, ["different", []]), idem: "req-1" });
    expect(again).toEqual({ ...first, replayed: true });
    expect(n.fsm.feedState()).toEqual({ first: 1, last: 1, ts: 1 });
    expect(n.fsm.lookupIdem("req-1")).toEqual(first);
    expect(n.fsm.lookupIdem("other")).toBeNull();
    // A failed compare is a result too: the retry gets it again even though the key now matches.
    const cas = n.apply(put("k", "v", { ifMatch: 5, idem: "req-2" }));
    expect(cas).toMatchObject({ error: "compare_failed" });
    n.apply(put("k", "v"));
    expect(n.apply(put("k", "v", { ifMatch: 2, idem: "req-2" }))).toEqual({ ...cas, replayed: true } as never);
  });

  test("keys are forgotten IDEM_TTL_MS after, by command time; the same on a reopened node", () => {
    const n = node();
    n.apply({ ...changes(1000, ["x", []]), idem: "old" });
    n.apply({ ...changes(1000 + IDEM_TTL_MS, ["y", []]), idem: "mid" });
    expect(n.fsm.lookupIdem("old")).not.toBeNull();
    n.apply({ ...changes(1001 + IDEM_TTL_MS, ["z", []]), idem: "new" });
    expect(n.fsm.lookupIdem("old")).toBeNull();
    n.reopen();
    expect(n.fsm.lookupIdem("mid")).not.toBeNull();
    expect(n.apply({ ...changes(1002 + IDEM_TTL_MS, ["again", []]), idem: "old" })).toMatchObject({ index: 4 });
  });
});

describe("invalid commands", () => {
  test("an undecodable or invalid entry becomes an invalid result and is still applied", () => {
    const n = node();
    const [garbage, ok] = n.applyAll([new Uint8Array([0xff, 0x00, 0x13]), changes(1, [1, []])]);
    expect(garbage).toMatchObject({ error: "invalid" });
    expect(ok).toMatchObject({ index: 1 });
    expect(n.applier.appliedIndex()).toBe(2);
  });
});

describe("determinism", () => {
  test("two nodes applying the same entries hold identical tables", () => {
    const a = node();
    const b = node();
    const cmds: Command[] = [
      changes(10, [{ x: 1 }, ["t"]]),
      put("k", "1", { idem: "i1" }),
      { op: "txn", compare: [{ key: "k", target: "exists", op: "=", value: true }], success: [{ op: "del", key: "k" }], failure: [], ts: 5 },
      { ...changes(20, ["y", []]), idem: "i1" },
    ];
    a.applyAll(cmds);
    for (const c of cmds) b.apply(c); // other batching, same result
    const dump = (n: Node) =>
      ["feed_state", "changes", "change_tags", "kv", "idem"].map((t) => n.store.db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all());
    expect(dump(a)).toEqual(dump(b));
    a.fsm.trimFeed({ keepEntries: 1 });
    b.fsm.trimFeed({ keepEntries: 1 });
    expect(dump(a)).toEqual(dump(b));
  });
});

describe("value rendering", () => {
  test("a put's feed change renders its value exactly as GET /kv does (one encoder): JSON, text, bytes, and JSON that does not parse", () => {
    const n = node();
    const cases: [string, Uint8Array][] = [
      ["application/json", bytes('{"a":[1,2]}')],
      ["application/vnd.x+json; charset=utf-8", bytes("3")],
      ["application/json", bytes("{nope")],
      ["text/plain", bytes("héllo")],
      ["text/plain", new Uint8Array([0xff, 0xfe])],
      ["application/octet-stream", bytes("raw")],
    ];
    cases.forEach(([contentType, value], i) => {
      n.apply({ op: "put", key: `k${i}`, value, contentType, ts: 1000 });
      const change = n.fsm.getChange(n.fsm.feedState().last)!;
      const { op, key, version, contentType: ct, ...rendered } = change.data as Record<string, unknown>;
      expect({ op, key, ct }).toEqual({ op: "put", key: `k${i}`, ct: contentType });
      expect(version).toBe(n.fsm.get(`k${i}`)!.version);
      expect(rendered).toEqual(renderValue(value, contentType));
    });
  });
});

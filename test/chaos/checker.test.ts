import { describe, expect, test } from "bun:test";
import { checkFeeds, checkKey, checkKvFeed, checkRegisterHistory, type ChangeAttempt, type NodeFinal, type RegisterOp } from "./checker.ts";

// Compact builders: [callMs, returnMs], client defaults to 0.
const put = (value: string, t: [number, number], r: { version?: number; outcome?: "ok" | "unknown" | "failed"; ifMatch?: number; currentVersion?: number; client?: number } = {}): RegisterOp => ({
  f: "put",
  key: "k",
  value,
  outcome: r.outcome ?? "ok",
  callMs: t[0],
  returnMs: t[1],
  client: r.client ?? 0,
  ...(r.version === undefined ? {} : { version: r.version }),
  ...(r.ifMatch === undefined ? {} : { ifMatch: r.ifMatch }),
  ...(r.currentVersion === undefined ? {} : { currentVersion: r.currentVersion }),
});
const get = (value: string | null, version: number, t: [number, number], client = 1): RegisterOp => ({
  f: "get",
  key: "k",
  value,
  version,
  outcome: "ok",
  callMs: t[0],
  returnMs: t[1],
  client,
});
const del = (t: [number, number], r: { version?: number; notFound?: boolean; outcome?: "ok" | "failed" | "unknown" } = {}): RegisterOp => ({
  f: "del",
  key: "k",
  outcome: r.outcome ?? "ok",
  callMs: t[0],
  returnMs: t[1],
  client: 2,
  ...(r.version === undefined ? {} : { version: r.version }),
  ...(r.notFound ? { notFound: true } : {}),
});

function expectBad(ops: RegisterOp[], mention: RegExp): string {
  const r = checkKey("k", ops);
  expect(r.ok).toBe(false);
  if (r.ok) throw new Error("unreachable");
  expect(r.tooComplex).not.toBe(true);
  expect(r.explanation).toMatch(/not linearizable/);
  expect(r.explanation).toMatch(mention);
  return r.explanation;
}

describe("register checker finds violations", () => {
  test("a stale read: the first value read after the second write was acknowledged", () => {
    const why = expectBad([put("a", [0, 10], { version: 1 }), put("b", [20, 30], { version: 2 }), get("a", 1, [40, 50])], /read "a"@1 but the key holds "b"@2/);
    expect(why).toMatch(/get k -> "a"@1/);
  });

  test("a lost write: an acknowledged put that a later read does not see", () => {
    expectBad([put("a", [0, 10], { version: 1 }), get(null, 0, [20, 30])], /read null@0 but the key holds "a"@1/);
  });

  test("a write applied twice: an old value back with a new version", () => {
    expectBad([put("a", [0, 10], { version: 1 }), put("b", [20, 30], { version: 2 }), get("a", 3, [40, 50])], /read "a"@3/);
  });

  test("a non-linearizable compare-and-set: two CAS from the same version both succeed", () => {
    expectBad(
      [put("a", [0, 10], { version: 1 }), put("b", [20, 40], { version: 2, ifMatch: 1, client: 1 }), put("c", [20, 40], { version: 3, ifMatch: 1, client: 2 })],
      /If-Match 1 but the key is at "[bc]"@[23]/,
    );
  });

  test("an unknown write the feed shows took effect, but that no order of the history can place", () => {
    // "x" took effect at version 2 (the feed says so), but it was sent after version 3 was acknowledged.
    expectBad([put("a", [0, 10], { version: 1 }), put("b", [20, 30], { version: 3 }), put("x", [40, 45], { outcome: "unknown", version: 2 })], /version 2 .* must come before its 3/);
  });

  test("a read of an unknown write that returned before the write was called", () => {
    expectBad([get("x", 5, [0, 10]), put("x", [20, 30], { outcome: "unknown" })], /read "x"@5 but the key holds null/);
  });

  test("versions that go down: a later write with a lower version", () => {
    expectBad([put("a", [0, 10], { version: 5 }), put("b", [20, 30], { version: 3 })], /writes apply in version order, and version 3 .* must come before its 5/);
  });

  test("a compare that failed reporting a version the key never had at that time", () => {
    expectBad([put("a", [0, 10], { version: 1 }), put("b", [20, 30], { outcome: "failed", ifMatch: 7, currentVersion: 0 })], /compare failed reporting version 0/);
  });

  test("a delete answered 404 while the key held a value", () => {
    expectBad([put("a", [0, 10], { version: 1 }), del([20, 30], { outcome: "failed", notFound: true })], /answered 404/);
  });
});

describe("register checker accepts linearizable histories", () => {
  test("concurrent writes and reads in any order that fits the times", () => {
    const ops = [put("a", [0, 100], { version: 2 }), put("b", [0, 100], { version: 1, client: 3 }), get("b", 1, [10, 20]), get("a", 2, [30, 40], 2)];
    expect(checkKey("k", ops).ok).toBe(true);
  });

  test("an unknown write that takes effect long after its call, seen by a read", () => {
    const ops = [put("a", [0, 10], { version: 1 }), put("x", [20, 25], { outcome: "unknown" }), get("a", 1, [100, 110]), get("x", 9, [200, 210])];
    expect(checkKey("k", ops).ok).toBe(true);
  });

  test("an unknown write that never takes effect", () => {
    const ops = [put("a", [0, 10], { version: 1 }), put("x", [20, 25], { outcome: "unknown" }), get("a", 1, [100, 110])];
    expect(checkKey("k", ops).ok).toBe(true);
  });

  test("compare-and-set: one succeeds, the other fails reporting the winner's version", () => {
    const ops = [
      put("a", [0, 10], { version: 1 }),
      put("b", [20, 40], { version: 2, ifMatch: 1, client: 1 }),
      put("c", [20, 40], { outcome: "failed", ifMatch: 1, currentVersion: 2, client: 2 }),
      get("b", 2, [50, 60]),
    ];
    expect(checkKey("k", ops).ok).toBe(true);
  });

  test("delete, then 404s and a create with If-Match 0", () => {
    const ops = [
      put("a", [0, 10], { version: 1 }),
      del([20, 30], { version: 2 }),
      del([40, 50], { outcome: "failed", notFound: true }),
      get(null, 0, [40, 50]),
      put("b", [60, 70], { version: 4, ifMatch: 0 }),
      get("b", 4, [80, 90]),
    ];
    expect(checkKey("k", ops).ok).toBe(true);
  });

  test("keys are checked separately and every key is reported", () => {
    const ops = [put("a", [0, 10], { version: 1 }), { ...put("z", [0, 10], { version: 2 }), key: "other" }, get("a", 1, [20, 30])];
    const r = checkRegisterHistory(ops);
    expect(r.ok).toBe(true);
    expect(r.results.map((x) => x.key).sort()).toEqual(["k", "other"]);
  });

  test("a long random linearizable history with unknown outcomes is accepted quickly", () => {
    // A sequential register run, each op given an interval around its linearization point.
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const ops: RegisterOp[] = [];
    let value: string | null = null;
    let version = 0;
    for (let i = 0; i < 1500; i++) {
      const at = i * 10;
      const t: [number, number] = [at - rnd() * 25, at + rnd() * 25];
      const kind = rnd();
      if (kind < 0.4) {
        ops.push(get(value, value === null ? 0 : version, t, i % 8));
      } else if (kind < 0.8) {
        value = `v${i}`;
        version = i + 1;
        ops.push(put(value, t, { version, outcome: rnd() < 0.1 ? "unknown" : "ok", client: i % 8 }));
      } else {
        ops.push(put(`lost${i}`, t, { outcome: "unknown", client: i % 8 })); // never took effect
      }
    }
    const started = performance.now();
    const r = checkKey("k", ops);
    expect(r.ok).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});

describe("register checker is bounded", () => {
  test("a history past the state limit is reported as too complex, not a hang", () => {
    // Many concurrent unknown writes and one read that fits none: the search must try every subset.
    const ops: RegisterOp[] = [];
    for (let i = 0; i < 30; i++) ops.push(put(`u${i}`, [0, 1], { outcome: "unknown", client: i }));
    ops.push(get("never", 99, [10, 20]));
    const r = checkKey("k", ops, { statesMax: 10_000 });
    expect(r.ok).toBe(false);
    if (r.ok) throw new Error("unreachable");
    expect(r.tooComplex).toBe(true);
    expect(r.explanation).toMatch(/too complex/);
  });
});

// ---------------------------------------------------------------- feed

const change = (id: string | null, index: number): { index: number; id: string | null; body: string } => ({ index, id, body: JSON.stringify({ id }) });
const node = (name: string, feed: ReturnType<typeof change>[], kv: [string, string][] = []): NodeFinal => ({ node: name, feed, kv: new Map(kv) });
const att = (id: string, outcome: "ok" | "failed" | "unknown", index?: number): ChangeAttempt => ({ id, outcome, node: "n1", ...(index === undefined ? {} : { index }) });

describe("feed checker", () => {
  const good = [change("c1", 1), change(null, 2), change("c2", 3)];

  test("accepts identical feeds with every acknowledged change once and an unknown one present or not", () => {
    const r = checkFeeds([att("c1", "ok", 1), att("c2", "unknown"), att("c2", "ok", 3), att("c3", "unknown")], [node("n1", good), node("n2", good)]);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.acknowledged).toBe(2);
  });

  test("finds a feed out of order between nodes", () => {
    const swapped = [change("c2", 1), change(null, 2), change("c1", 3)];
    const r = checkFeeds([att("c1", "ok", 1), att("c2", "ok", 3)], [node("n1", good), node("n2", swapped)]);
    expect(r.ok).toBe(false);
    expect(r.problems.join("\n")).toMatch(/feeds differ at position 0: n1 has 1 .*c1.*, n2 has 1 .*c2/);
  });

  test("finds a lost acknowledged change", () => {
    const r = checkFeeds([att("c1", "ok", 1), att("c9", "ok", 4)], [node("n1", good)]);
    expect(r.problems.join("\n")).toMatch(/change c9 was acknowledged at index 4 by n1 but is not in the final feed: a lost write/);
  });

  test("finds a change applied twice", () => {
    const twice = [change("c1", 1), change("c1", 2)];
    const r = checkFeeds([att("c1", "unknown"), att("c1", "ok", 1)], [node("n1", twice)]);
    expect(r.problems.join("\n")).toMatch(/change c1 is in n1's feed 2 times \(indexes 1, 2\): applied twice/);
  });

  test("finds a refused change in the feed, one acknowledged at another index, and one nobody wrote", () => {
    const r = checkFeeds([att("c1", "failed"), att("c2", "ok", 2)], [node("n1", good)]);
    const all = r.problems.join("\n");
    expect(all).toMatch(/change c1 was refused .* but is in the feed at 1/);
    expect(all).toMatch(/change c2 was acknowledged at index 2 by n1 but the feed has it at 3/);
    const r2 = checkFeeds([], [node("n1", [change("ghost", 1)])]);
    expect(r2.problems.join("\n")).toMatch(/change ghost is in the feed but no client wrote it/);
  });

  test("finds key-value state that differs between nodes", () => {
    const r = checkFeeds([att("c1", "ok", 1), att("c2", "ok", 3)], [node("n1", good, [["a", "2:x"]]), node("n2", good, [["a", "2:y"]])]);
    expect(r.problems.join("\n")).toMatch(/key a: n1 has 2:x, n2 has 2:y/);
  });
});

describe("key-value feed checker", () => {
  const kvPut = (value: string, version: number, outcome: "ok" | "failed" | "unknown" = "ok"): RegisterOp => ({ f: "put", key: "k", value, outcome, callMs: 0, returnMs: 1, client: 0, ...(outcome === "ok" ? { version } : {}) });
  test("accepts acknowledged writes at their versions and an unknown one present", () => {
    const r = checkKvFeed([kvPut("a", 1), kvPut("b", 2, "unknown")], [{ index: 1, op: "put", key: "k", version: 1, text: "a" }, { index: 2, op: "put", key: "k", version: 2, text: "b" }]);
    expect(r.problems).toEqual([]);
  });
  test("finds a lost acknowledged put, a value applied twice and a refused one present", () => {
    const r = checkKvFeed([kvPut("a", 1), kvPut("b", 2), kvPut("c", 0, "failed")], [
      { index: 1, op: "put", key: "k", version: 1, text: "a" },
      { index: 3, op: "put", key: "k", version: 3, text: "a" },
      { index: 4, op: "put", key: "k", version: 4, text: "c" },
    ]);
    const all = r.problems.join("\n");
    expect(all).toMatch(/put k = "b" .*acknowledged, but the feed has nothing for k at version 2/);
    expect(all).toMatch(/k=a is in the feed 2 times \(indexes 1, 3\): applied twice/);
    expect(all).toMatch(/k=c was refused but is in the feed/);
  });
});

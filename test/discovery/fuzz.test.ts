/**
 * Fuzzing the cluster file parser: random bytes, text mutations of valid
 * files and structural mutations (a value replaced by any JSON, keys
 * dropped or added, prototype keys) never throw: each gives a config or a
 * ClusterFileError with problems that say what is wrong. CI runs a fixed
 * seed; CAIRN_FUZZ_RUNS=100000 runs longer.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ClusterFileError } from "../../src/discovery/errors.ts";
import { parseClusterBytes, parseClusterText, type LoadResult } from "../../src/discovery/load.ts";
import { fuzzParams, fuzzTimeoutMs, ODD_KEYS, objectOf, oddJson, oddString } from "../helpers/fuzz.ts";

const PATH = "/virtual/cluster.json";

function validFile(n: number): Record<string, unknown> {
  return {
    cluster: "fuzz",
    founders: ["n1"],
    nodes: Array.from({ length: n }, (_, i) => ({ id: `n${i + 1}`, peer: `127.0.0.1:${7400 + 2 * i}`, api: `https://127.0.0.1:${7401 + 2 * i}`, ...(i === 2 ? { role: "learner" } : {}) })),
    tls: { ca: "tls/ca.pem", cert: "tls/${id}.pem", key: "tls/${id}.key" },
    raft: { heartbeatMs: 100, electionMs: 1000 },
  };
}

/** The result is typed and sane, whatever the input. */
function checkResult(r: LoadResult): void {
  if (r.ok) {
    // "nodes": [] parses (the shrink rules in plan.ts decide whether it is ever converged to).
    expect(Array.isArray(r.config.nodes)).toBe(true);
    for (const n of r.config.nodes) {
      expect(typeof n.id).toBe("string");
      expect(Number.isInteger(n.peerPort) && n.peerPort > 0 && n.peerPort < 65536).toBe(true);
    }
    return;
  }
  expect(r.error).toBeInstanceOf(ClusterFileError);
  expect(r.error.problems.length).toBeGreaterThan(0);
  for (const p of r.error.problems) expect(typeof p === "string" && p.length > 0).toBe(true);
  expect(r.error.message).toContain(PATH);
}

function parseNoThrow(text: string): LoadResult {
  let r: LoadResult | undefined;
  expect(() => (r = parseClusterText(text, PATH))).not.toThrow();
  checkResult(r!);
  return r!;
}

type Step = string | number;

/** Every path to a value inside v (objects and arrays), root included. */
function paths(v: unknown, at: Step[] = []): Step[][] {
  const out: Step[][] = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

function withAt(v: unknown, path: Step[], f: (old: unknown) => unknown): unknown {
  if (path.length === 0) return f(v);
  const [head, ...rest] = path;
  if (Array.isArray(v)) return v.map((x, i) => (i === head ? withAt(x, rest, f) : x));
  const o = v as Record<string, unknown>;
  return objectOf(Object.entries(o).map(([k, x]) => [k, k === head ? withAt(x, rest, f) : x]));
}

type Edit = { pick: number; kind: "replace" | "drop" | "add" | "dup"; key: string; value: unknown };

function applyEdit(v: unknown, e: Edit): unknown {
  const all = paths(v);
  const path = all[e.pick % all.length]!;
  return withAt(v, path, (old) => {
    switch (e.kind) {
      case "replace":
        return e.value;
      case "drop":
        if (Array.isArray(old)) return old.slice(1);
        if (old !== null && typeof old === "object") return objectOf(Object.entries(old).slice(1));
        return undefined;
      case "add":
        if (Array.isArray(old)) return [...old, e.value];
        if (old !== null && typeof old === "object") return objectOf([...Object.entries(old), [e.key, e.value]]);
        return old;
      case "dup":
        return Array.isArray(old) ? [...old, ...old] : old;
    }
  });
}

const edit = fc.record({
  pick: fc.nat(),
  kind: fc.constantFrom("replace" as const, "drop" as const, "add" as const, "dup" as const),
  key: fc.oneof(fc.constantFrom(...ODD_KEYS, "id", "peer", "api", "role", "allowShrink", "revoked"), oddString(false)),
  value: fc.oneof(
    oddJson({ lone: true, maxDepth: 3 }),
    fc.constantFrom("n1", "127.0.0.1:0", "127.0.0.1:65536", "[::1]:7400", "http://x", "https://[::1]:1/", "ftp://x", "${id}", "", -1, 1e308, 0.5, "learner", "witness"),
  ),
});

describe("cluster file fuzz", () => {
  test("the valid file parses", () => {
    expect(parseNoThrow(JSON.stringify(validFile(3))).ok).toBe(true);
  });

  test(
    "random bytes: a config or a ClusterFileError",
    () => {
      fc.assert(
        fc.property(fc.oneof(fc.uint8Array({ maxLength: 400 }), fc.string({ unit: "binary", maxLength: 200 }).map((s) => new TextEncoder().encode(s))), (bytes) => {
          let r: LoadResult | undefined;
          expect(() => (r = parseClusterBytes(bytes, PATH))).not.toThrow();
          checkResult(r!);
        }),
        fuzzParams(500),
      );
    },
    fuzzTimeoutMs(500, 2),
  );

  test(
    "text mutations of a valid file: a config or a ClusterFileError",
    () => {
      const piece = fc.oneof(fc.constantFrom("{", "}", "[", "]", '"', ",", ":", "\\", "\\u00", "\\ud800", "/*", "//", "\n", "\u2028", "\ufeff", "null", "-", "1e999", '"__proto__":1,', ",,"), oddString(true));
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 6 }), piece), { minLength: 1, maxLength: 4 }), (n, pretty, muts) => {
          let text = JSON.stringify(validFile(n), null, pretty ? 2 : undefined);
          for (const [at, del, p] of muts) {
            const i = at % (text.length + 1);
            text = text.slice(0, i) + p + text.slice(i + del);
          }
          parseNoThrow(text);
        }),
        fuzzParams(500),
      );
    },
    fuzzTimeoutMs(500, 2),
  );

  test(
    "structural mutations (values replaced by any JSON, keys dropped, added, duplicated): a config or a ClusterFileError",
    () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 4 }), fc.array(edit, { minLength: 1, maxLength: 4 }), (n, edits) => {
          const v = edits.reduce<unknown>((acc, e) => applyEdit(acc, e), validFile(n));
          const text = JSON.stringify(v);
          if (text === undefined) return;
          parseNoThrow(text);
        }),
        fuzzParams(500),
      );
    },
    fuzzTimeoutMs(500, 3),
  );

  test("deep nesting and a file at the size limit are refused with a problem, not a stack overflow", () => {
    parseNoThrow(`{"cluster": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`);
    const r = parseClusterBytes(new TextEncoder().encode(" ".repeat((1 << 20) + 1)), PATH);
    checkResult(r);
    expect(r.ok).toBe(false);
  });
});

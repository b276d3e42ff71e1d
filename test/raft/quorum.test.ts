/**
 * Majority arithmetic (§5.2 votes, §5.3 commit) and joint majorities
 * (thesis §4.3: both the old and the new configuration must agree).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { jointCommitted, jointVote, majorityCommitted, majorityVote, type VoteResult } from "../../src/raft/quorum.ts";

const set = (...ids: string[]) => new Set(ids);
const votes = (o: Record<string, boolean>) => new Map(Object.entries(o));

describe("majorities (§5.2, §5.3)", () => {
  const committed: [number[], number][] = [
    [[5], 5],
    [[5, 1], 1],
    [[5, 3, 1], 3],
    [[1, 5, 3], 3],
    [[5, 4, 3, 1], 3],
    [[9, 7, 5, 3, 1], 5],
    [[0, 0, 7, 7, 7], 7],
    [[2, 2, 2, 9, 0, 0], 2],
  ];
  for (const [matches, want] of committed) {
    test(`§5.3: majorityCommitted of [${matches}] is ${want}`, () => {
      const ids = matches.map((_, i) => `n${i}`);
      expect(majorityCommitted(new Set(ids), (id) => matches[ids.indexOf(id)]!)).toBe(want);
    });
  }

  test("§5.3: majorityCommitted is the highest index that a majority has reached (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(50), { minLength: 1, maxLength: 9 }), (matches) => {
        const ids = matches.map((_, i) => `n${i}`);
        const got = majorityCommitted(new Set(ids), (id) => matches[ids.indexOf(id)]!);
        const q = Math.floor(matches.length / 2) + 1;
        const reached = (x: number) => matches.filter((m) => m >= x).length >= q;
        expect(reached(got)).toBe(true);
        expect(reached(got + 1)).toBe(false);
      }),
      { seed: 101, numRuns: 300 },
    );
  });

  // thesis §4.3: outside a joint configuration only C_new decides; the empty outgoing half must not block.
  test("an empty voter set commits everything and wins every vote (so an empty outgoing half is neutral)", () => {
    expect(majorityCommitted(set(), () => 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(majorityVote(set(), votes({}))).toBe("won");
  });

  const voteCases: [string[], Record<string, boolean>, VoteResult][] = [
    [["a"], { a: true }, "won"],
    [["a", "b", "c"], { a: true }, "pending"],
    [["a", "b", "c"], { a: true, b: true }, "won"],
    [["a", "b", "c"], { a: true, b: false }, "pending"],
    [["a", "b", "c"], { a: true, b: false, c: false }, "lost"],
    [["a", "b", "c", "d"], { a: true, b: true, c: false }, "pending"],
    [["a", "b", "c", "d"], { a: true, b: true, c: false, d: false }, "lost"],
    [["a", "b", "c"], { a: true, x: true, y: true }, "pending"], // non-voters do not count
  ];
  for (const [ids, v, want] of voteCases) {
    test(`§5.2: majorityVote ${JSON.stringify(v)} of [${ids}] is ${want}`, () => {
      expect(majorityVote(new Set(ids), votes(v))).toBe(want);
    });
  }

  test("§5.2: two candidates cannot both win a term: majorities of one voter set always intersect (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.array(fc.boolean(), { maxLength: 9 }), (n, split) => {
        const ids = [...Array(n).keys()].map((i) => `n${i}`);
        // Each voter votes for at most one of A and B.
        const a = new Map<string, boolean>();
        const b = new Map<string, boolean>();
        ids.forEach((id, i) => (split[i] ? a : b).set(id, true));
        const results = [majorityVote(new Set(ids), a), majorityVote(new Set(ids), b)];
        expect(results.filter((r) => r === "won").length).toBeLessThanOrEqual(1);
      }),
      { seed: 102, numRuns: 300 },
    );
  });
});

describe("joint majorities (thesis §4.3)", () => {
  const j = (incoming: string[], outgoing: string[]) => ({ incoming: new Set(incoming), outgoing: new Set(outgoing) });

  test("thesis §4.3: a joint commit index is the lower of the two halves", () => {
    const m: Record<string, number> = { a: 9, b: 8, c: 1, d: 2, e: 3 };
    expect(jointCommitted(j(["a", "b", "c"], ["c", "d", "e"]), (id) => m[id]!)).toBe(2);
    expect(jointCommitted(j(["a", "b", "c"], []), (id) => m[id]!)).toBe(8);
  });

  const cases: [string[], string[], Record<string, boolean>, VoteResult][] = [
    [["a", "b", "c"], [], { a: true, b: true }, "won"],
    [["a", "b", "c"], ["a", "d", "e"], { a: true, b: true }, "pending"],
    [["a", "b", "c"], ["a", "d", "e"], { a: true, b: true, d: true }, "won"],
    [["a", "b", "c"], ["a", "d", "e"], { a: true, b: true, d: false, e: false }, "lost"],
    [["a", "b", "c"], ["a", "d", "e"], { b: false, c: false, d: true }, "lost"],
  ];
  for (const [inc, out, v, want] of cases) {
    test(`thesis §4.3: jointVote ${JSON.stringify(v)} of [${inc}] x [${out}] is ${want}`, () => {
      expect(jointVote(j(inc, out), votes(v))).toBe(want);
    });
  }

  test("thesis §4.3: a joint win needs a majority in each half, so two joint winners cannot exist (property)", () => {
    const ids = ["a", "b", "c", "d", "e", "f"];
    fc.assert(
      fc.property(
        fc.subarray(ids, { minLength: 1 }),
        fc.subarray(ids),
        fc.array(fc.constantFrom<"A" | "B" | "-">("A", "B", "-"), { minLength: 6, maxLength: 6 }),
        (inc, out, ballot) => {
          const cfg = j(inc, out);
          const a = new Map<string, boolean>();
          const b = new Map<string, boolean>();
          ids.forEach((id, i) => {
            if (ballot[i] === "A") a.set(id, true);
            if (ballot[i] === "B") b.set(id, true);
          });
          const ra = jointVote(cfg, a);
          expect(ra === "won").toBe(majorityVote(cfg.incoming, a) === "won" && majorityVote(cfg.outgoing, a) === "won");
          expect(ra === "won" && jointVote(cfg, b) === "won").toBe(false);
        },
      ),
      { seed: 104, numRuns: 300 },
    );
  });
});

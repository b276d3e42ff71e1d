/**
 * Configuration change validation (§6, thesis §4.3): init, entering and
 * leaving a joint configuration, and the invariants every result keeps.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { allMembers, applyConfChange, confEquals, isJoint, isVoter } from "../../src/raft/confchange.ts";
import { EMPTY_CONF, type ConfChange, type ConfChangeSingle, type ConfState } from "../../src/raft/index.ts";

function ok(c: ConfState, cc: ConfChange): ConfState {
  const r = applyConfChange(c, cc);
  if (!r.ok) throw new Error(`unexpected refusal: ${r.reason}`);
  return r.conf;
}

function refused(c: ConfState, cc: ConfChange): string {
  const r = applyConfChange(c, cc);
  if (r.ok) throw new Error(`unexpectedly accepted: ${JSON.stringify(r.conf)}`);
  return r.reason;
}

const base: ConfState = { voters: ["n1", "n2", "n3"], votersOutgoing: [], learners: ["n4"], learnersNext: [] };
const enter = (...changes: ConfChangeSingle[]): ConfChange => ({ op: "enter", changes });
const add = (node: string): ConfChangeSingle => ({ type: "addVoter", node });
const learner = (node: string): ConfChangeSingle => ({ type: "addLearner", node });
const remove = (node: string): ConfChangeSingle => ({ type: "remove", node });

describe("init (§6)", () => {
  // §6: the first configuration; a server is a voter or a learner (thesis §4.2.1), never both.
  test("init sets the first configuration, voters winning over learners", () => {
    expect(ok(EMPTY_CONF, { op: "init", changes: [add("b"), add("a"), learner("c"), learner("a")] })).toEqual({
      voters: ["a", "b"],
      votersOutgoing: [],
      learners: ["c"],
      learnersNext: [],
    });
  });
  // §6: a configuration is only ever changed from the current one; init is for a new cluster.
  test("init is refused on a configured cluster, without voters, or with a removal", () => {
    expect(refused(base, { op: "init", changes: [add("a")] })).toContain("already");
    expect(refused(EMPTY_CONF, { op: "init", changes: [learner("a")] })).toContain("without voters");
    expect(refused(EMPTY_CONF, { op: "init", changes: [add("a"), remove("b")] })).toContain("remove");
  });
});

describe("joint consensus (thesis §4.3)", () => {
  test("thesis §4.3: adding a voter enters a joint configuration with the old voters outgoing", () => {
    const c = ok(base, enter(add("n5")));
    expect(c).toEqual({ voters: ["n1", "n2", "n3", "n5"], votersOutgoing: ["n1", "n2", "n3"], learners: ["n4"], learnersNext: [] });
    expect(isJoint(c)).toBe(true);
    expect(ok(c, { op: "leave", changes: [] })).toEqual({ voters: ["n1", "n2", "n3", "n5"], votersOutgoing: [], learners: ["n4"], learnersNext: [] });
  });

  test("thesis §4.3: replacing a voter and promoting a learner in one change", () => {
    const c = ok(base, enter(remove("n3"), add("n4")));
    expect(c).toEqual({ voters: ["n1", "n2", "n4"], votersOutgoing: ["n1", "n2", "n3"], learners: [], learnersNext: [] });
    expect(isVoter(c, "n3")).toBe(true); // still a voter of the outgoing half
    expect(isVoter(ok(c, { op: "leave", changes: [] }), "n3")).toBe(false);
  });

  test("thesis §4.3: demoting a voter keeps it voting in the old half and makes it a learner on leaving", () => {
    const c = ok(base, enter(learner("n2")));
    expect(c).toEqual({ voters: ["n1", "n3"], votersOutgoing: ["n1", "n2", "n3"], learners: ["n4"], learnersNext: ["n2"] });
    expect(ok(c, { op: "leave", changes: [] })).toEqual({ voters: ["n1", "n3"], votersOutgoing: [], learners: ["n2", "n4"], learnersNext: [] });
  });

  test("thesis §4.3: removing a learner and adding a new learner", () => {
    expect(ok(base, enter(remove("n4"), learner("n9")))).toMatchObject({ learners: ["n9"], learnersNext: [] });
  });

  test("thesis §4.3: refusals: uninitialised, already joint, no changes, empty id, no voters left, leave outside joint, leave with changes", () => {
    expect(refused(EMPTY_CONF, enter(add("a")))).toContain("uninitialised");
    expect(refused(ok(base, enter(add("n5"))), enter(add("n6")))).toContain("already in a joint");
    expect(refused(base, enter())).toContain("no changes");
    expect(refused(base, enter(add("")))).toContain("empty node id");
    expect(refused(base, enter(remove("n1"), remove("n2"), remove("n3")))).toContain("no voters");
    expect(refused(base, enter(learner("n1"), learner("n2"), learner("n3")))).toContain("no voters");
    expect(refused(base, { op: "leave", changes: [] })).toContain("outside a joint");
    expect(refused(ok(base, enter(add("n5"))), { op: "leave", changes: [add("n6")] })).toContain("no changes");
  });

  // thesis §4.3: in C_old,new a server votes if it is in either half.
  test("allMembers, isVoter and confEquals", () => {
    const c = ok(base, enter(learner("n2"), add("n5")));
    expect(allMembers(c)).toEqual(["n1", "n2", "n3", "n4", "n5"]);
    expect(isVoter(c, "n2")).toBe(true);
    expect(isVoter(c, "n4")).toBe(false);
    expect(confEquals(c, { ...c })).toBe(true);
    expect(confEquals(c, base)).toBe(false);
  });

  const ids = ["a", "b", "c", "d", "e"];
  const single = fc.record({ type: fc.constantFrom<ConfChangeSingle["type"]>("addVoter", "addLearner", "remove"), node: fc.constantFrom(...ids) });
  const step = fc.oneof(
    fc.record({ op: fc.constant<"enter">("enter"), changes: fc.array(single, { maxLength: 4 }) }),
    fc.constant<ConfChange>({ op: "leave", changes: [] }),
  );

  test("thesis §4.3: every accepted change keeps the invariants, and leaving always ends the joint state (property)", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        let c = ok(EMPTY_CONF, { op: "init", changes: [add("a"), add("b"), add("c")] });
        for (const cc of steps) {
          const r = applyConfChange(c, cc);
          if (!r.ok) continue;
          const n = r.conf;
          const sortedUnique = (xs: readonly string[]) => xs.every((x, i) => i === 0 || xs[i - 1]! < x);
          for (const xs of [n.voters, n.votersOutgoing, n.learners, n.learnersNext]) expect(sortedUnique(xs)).toBe(true);
          expect(n.voters.length).toBeGreaterThan(0);
          for (const l of n.learners) expect(isVoter(n, l)).toBe(false);
          for (const l of n.learnersNext) expect(n.votersOutgoing).toContain(l);
          if (!isJoint(n)) expect(n.learnersNext).toEqual([]);
          if (cc.op === "enter") {
            expect(isJoint(n)).toBe(true);
            expect(n.votersOutgoing).toEqual(c.voters);
          } else {
            expect(isJoint(n)).toBe(false);
            expect(n.voters).toEqual(c.voters);
          }
          c = n;
        }
      }),
      { seed: 201, numRuns: 300 },
    );
  });
});

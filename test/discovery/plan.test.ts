import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type PeerProgress, type PlanInput, type PlanNode, type PlanStep, planNextStep, quorum, shrinkHold } from "../../src/discovery/plan.ts";
import type { ConfState } from "../../src/raft/types.ts";

const ids = (s: string) => s.split(" ").filter((x) => x !== "");

interface Case {
  /** File nodes: "n1 n2 n4:l" (":l" = role learner, ":v" = explicit voter). */
  file: string;
  voters: string;
  learners?: string;
  outgoing?: string;
  leader?: string;
  /** Members not recently active (the leader always is). */
  inactive?: string;
  /** Match per member; others are at lastIndex. */
  match?: Record<string, number>;
  /** The file's "allowShrink". */
  allowShrink?: boolean;
}

const LAST = 100;
const LAG_MAX = 10;

function fileNodes(s: string): PlanNode[] {
  return ids(s).map((t) => {
    const [id, r] = t.split(":");
    return r === "l" ? { id: id!, role: "learner" } : r === "v" ? { id: id!, role: "voter" } : r === "w" ? { id: id!, role: "witness" } : { id: id! };
  });
}

function input(c: Case): PlanInput {
  const conf: ConfState = {
    voters: ids(c.voters).sort(),
    votersOutgoing: ids(c.outgoing ?? "").sort(),
    learners: ids(c.learners ?? "").sort(),
    learnersNext: [],
  };
  const inactive = new Set(ids(c.inactive ?? ""));
  const progress = new Map<string, PeerProgress>();
  for (const id of [...conf.voters, ...conf.learners]) {
    progress.set(id, { match: c.match?.[id] ?? LAST, recentActive: !inactive.has(id) });
  }
  return { nodes: fileNodes(c.file), conf, leaderId: c.leader ?? "n1", progress, lastIndex: LAST, catchUpLagMax: LAG_MAX, allowShrink: c.allowShrink };
}

const plan = (c: Case) => planNextStep(input(c));

describe("planNextStep: table", () => {
  test.each<[string, Case, PlanStep]>([
    ["converged", { file: "n1 n2 n3", voters: "n1 n2 n3" }, { kind: "none" }],
    ["converged with a learner", { file: "n1 n2 n3 n4:l", voters: "n1 n2 n3", learners: "n4" }, { kind: "none" }],
    ["explicit voter role", { file: "n1:v n2:v n3:v", voters: "n1 n2 n3" }, { kind: "none" }],
    ["a witness is a voter to the planner", { file: "n1 n2 n3:w", voters: "n1 n2 n3" }, { kind: "none" }],
    ["a caught-up witness learner is promoted", { file: "n1 n2 n3:w", voters: "n1 n2", learners: "n3" }, { kind: "promote", id: "n3" }],
    ["a new id joins as a learner", { file: "n1 n2 n3 n4", voters: "n1 n2 n3" }, { kind: "addLearner", id: "n4" }],
    ["new ids in file order", { file: "n1 n2 n3 n5 n4", voters: "n1 n2 n3" }, { kind: "addLearner", id: "n5" }],
    ["a new learner-role id joins as a learner", { file: "n1 n2 n3 n4:l", voters: "n1 n2 n3" }, { kind: "addLearner", id: "n4" }],
    ["adds come before removals", { file: "n1 n2 n4", voters: "n1 n2 n3" }, { kind: "addLearner", id: "n4" }],
    ["a caught-up active learner is promoted", { file: "n1 n2 n3 n4", voters: "n1 n2 n3", learners: "n4", match: { n4: 90 } }, { kind: "promote", id: "n4" }],
    ["promotion before removal of a learner", { file: "n1 n2 n3 n4", voters: "n1 n2 n3", learners: "n4 n9" }, { kind: "promote", id: "n4" }],
    ["a learner not in the file is removed", { file: "n1 n2 n3", voters: "n1 n2 n3", learners: "n9" }, { kind: "remove", id: "n9" }],
    ["learner removal before voter removal", { file: "n1 n2", voters: "n1 n2 n3", learners: "n9" }, { kind: "remove", id: "n9" }],
    ["a voter not in the file is removed", { file: "n1 n2", voters: "n1 n2 n3" }, { kind: "remove", id: "n3" }],
    ["a voter the file calls learner is demoted", { file: "n1 n2 n3:l", voters: "n1 n2 n3" }, { kind: "demote", id: "n3" }],
    ["a dead voter is removed before a live one", { file: "n1 n2 n3", voters: "n1 n2 n3 n4 n5", inactive: "n5" }, { kind: "remove", id: "n5" }],
    ["two of three removed (allowShrink): one at a time, by id", { file: "n1", voters: "n1 n2 n3", allowShrink: true }, { kind: "remove", id: "n2" }],
    ["removal of the leader: transfer to the voter with the highest match", { file: "n2 n3", voters: "n1 n2 n3", match: { n2: 80, n3: 95 } }, { kind: "transferLeader", to: "n3" }],
    ["transfer ties go to the lowest id", { file: "n2 n3", voters: "n1 n2 n3" }, { kind: "transferLeader", to: "n2" }],
    ["transfer skips inactive voters", { file: "n2 n3 n4", voters: "n1 n2 n3 n4", inactive: "n3", match: { n3: 100, n2: 50, n4: 40 } }, { kind: "transferLeader", to: "n2" }],
    ["transfer skips voters that are leaving too", { file: "n3 n4:l n5", voters: "n1 n2 n3 n4 n5", allowShrink: true, match: { n2: 99, n4: 99, n3: 50, n5: 60 } }, { kind: "remove", id: "n2" }],
    ["demotion of the leader: transfer first", { file: "n1:l n2 n3", voters: "n1 n2 n3", match: { n2: 99 } }, { kind: "transferLeader", to: "n3" }],
    ["other removals before the leader's own", { file: "n3", voters: "n1 n2 n3", allowShrink: true }, { kind: "remove", id: "n2" }],
    ["a single voter hands over to a promoted node", { file: "n2", voters: "n1 n2" }, { kind: "transferLeader", to: "n2" }],
  ])("%s", (_name, c, want) => {
    expect(plan(c)).toEqual(want);
  });

  test.each<[string, Case, string]>([
    ["a joint configuration", { file: "n1 n2 n3 n4", voters: "n1 n2 n3", outgoing: "n1 n2" }, "a joint configuration (voters [n1, n2, n3], outgoing [n1, n2]) must be left before the next change"],
    ["no voters yet", { file: "n1", voters: "" }, "the configuration has no voters yet (not bootstrapped)"],
    ["the leader is not a voter", { file: "n1 n2 n3", voters: "n2 n3 n4", leader: "n1" }, 'the leader "n1" is not a voter of the configuration [n2, n3, n4]'],
    ["no active majority", { file: "n1 n2 n3 n4", voters: "n1 n2 n3", inactive: "n2 n3" }, "only 1 of 3 voters are recently active ([n1]); no configuration change can commit until 2 are (if the others are gone for good: cairn recover)"],
    ["a lagging learner", { file: "n1 n2 n3 n4", voters: "n1 n2 n3", learners: "n4", match: { n4: 50 } }, "waiting to promote learners to voters: n4 is catching up (50 entries behind, promoted at 10 or fewer)"],
    ["a silent learner", { file: "n1 n2 n3 n4", voters: "n1 n2 n3", learners: "n4", inactive: "n4" }, "waiting to promote learners to voters: n4 has not been heard from recently"],
    [
      "a replace waits for the new node before removing a live voter",
      { file: "n1 n2 n4", voters: "n1 n2 n3", learners: "n4", match: { n4: 20 } },
      "removing n3 waits until n4 is a voter, so that the cluster keeps its fault tolerance (n4 is 80 entries behind); take it out of the cluster file to go ahead without",
    ],
    [
      "it waits even for a new node that has not connected yet",
      { file: "n1 n2 n4", voters: "n1 n2 n3", learners: "n4", inactive: "n4", match: { n4: 0 } },
      "removing n3 waits until n4 is a voter, so that the cluster keeps its fault tolerance (n4 has not been heard from recently); take it out of the cluster file to go ahead without",
    ],
  ])("wait: %s", (_name, c, reason) => {
    expect(plan(c)).toEqual({ kind: "wait", reason });
  });

  test("a dead voter is removed even while a new node catches up", () => {
    expect(plan({ file: "n1 n2 n4", voters: "n1 n2 n3", learners: "n4", inactive: "n3", match: { n4: 20 } })).toEqual({ kind: "remove", id: "n3" });
  });

  test.each<[string, Case, string]>([
    [
      "removing a live voter when another is down",
      { file: "n1 n3", voters: "n1 n2 n3", inactive: "n3" },
      "removing n2 would leave voters [n1, n3] of which only 1 [n1] is recently active, fewer than the majority of 2 it needs; bring n3 back, or take it out of the cluster file if gone for good" +
        ' (that takes 2 of the 3 voters out at once, which is held: keep n2 a voter in the file until n3 is out, or add "allowShrink": true)',
    ],
    [
      "demoting a live voter when two of five are down",
      { file: "n1 n2 n3:l n4 n5", voters: "n1 n2 n3 n4 n5", inactive: "n4 n5" },
      "demoting n3 would leave voters [n1, n2, n4, n5] of which only 2 [n1, n2] are recently active, fewer than the majority of 3 it needs; bring n4, n5 back, or take them out of the cluster file if gone for good" +
        ' (that takes 3 of the 5 voters out at once, which is held: keep n3 a voter in the file until n4, n5 are out, or add "allowShrink": true)',
    ],
  ])("refuse: %s", (_name, c, reason) => {
    expect(plan(c)).toEqual({ kind: "refuse", reason });
  });

  test("with the dead voter also leaving the file, it goes first and the live one after", () => {
    expect(plan({ file: "n1", voters: "n1 n2 n3", inactive: "n3", allowShrink: true })).toEqual({ kind: "remove", id: "n3" });
    expect(plan({ file: "n1", voters: "n1 n2" })).toEqual({ kind: "remove", id: "n2" });
  });

  const MAJORITY = (leaving: string, n: number) =>
    `the cluster file takes ${ids(leaving).length} of the ${n} voters out at once ([${ids(leaving).join(", ")}]), a majority: ` +
    `nothing is changed; if that is meant, add "allowShrink": true to the file, or take them out one at a time (each after the last is out)`;
  const NO_VOTER = (what: string, voters: string) =>
    `the cluster file lists no voter (${what}), which would leave the cluster with none: nothing is changed; list the voters [${ids(voters).join(", ")}] again (allowShrink does not allow this)`;

  test.each<[string, Case, string]>([
    ["an empty node list", { file: "", voters: "n1 n2 n3" }, NO_VOTER("no nodes at all", "n1 n2 n3")],
    ["an empty node list, even with allowShrink", { file: "", voters: "n1 n2 n3", allowShrink: true }, NO_VOTER("no nodes at all", "n1 n2 n3")],
    ["only learners, even with allowShrink", { file: "n1:l n2:l n3:l", voters: "n1 n2 n3", allowShrink: true }, NO_VOTER("only learners", "n1 n2 n3")],
    ["the last voter removed", { file: "", voters: "n1" }, NO_VOTER("no nodes at all", "n1")],
    ["the last voter demoted", { file: "n1:l", voters: "n1" }, NO_VOTER("only learners", "n1")],
    ["two of three voters removed in one edit", { file: "n1", voters: "n1 n2 n3" }, MAJORITY("n2 n3", 3)],
    ["the leader plus another removed in one edit", { file: "n3", voters: "n1 n2 n3" }, MAJORITY("n1 n2", 3)],
    ["two of three demoted count as removed", { file: "n1 n2:l n3:l", voters: "n1 n2 n3" }, MAJORITY("n2 n3", 3)],
    ["one removed and one demoted", { file: "n1 n3:l", voters: "n1 n2 n3" }, MAJORITY("n2 n3", 3)],
    ["three of five", { file: "n1 n2", voters: "n1 n2 n3 n4 n5" }, MAJORITY("n3 n4 n5", 5)],
    ["three of four", { file: "n1", voters: "n1 n2 n3 n4" }, MAJORITY("n2 n3 n4", 4)],
    ["replacing two of three voters is held too (no adds either)", { file: "n1 n4 n5", voters: "n1 n2 n3" }, MAJORITY("n2 n3", 3)],
    ["held before a learner is removed", { file: "n1", voters: "n1 n2 n3", learners: "n9" }, MAJORITY("n2 n3", 3)],
  ])("hold: %s", (_name, c, reason) => {
    expect(plan(c)).toEqual({ kind: "hold", reason });
  });

  test.each<[string, Case, PlanStep]>([
    ["one of three removed", { file: "n1 n2", voters: "n1 n2 n3" }, { kind: "remove", id: "n3" }],
    ["then one of the remaining two", { file: "n1", voters: "n1 n2" }, { kind: "remove", id: "n2" }],
    ["two of five", { file: "n1 n2 n3", voters: "n1 n2 n3 n4 n5" }, { kind: "remove", id: "n4" }],
    ["two of four (half is not a majority)", { file: "n1 n2", voters: "n1 n2 n3 n4" }, { kind: "remove", id: "n3" }],
    ["the leader plus another of five: the other first", { file: "n3 n4 n5", voters: "n1 n2 n3 n4 n5" }, { kind: "remove", id: "n2" }],
    ["two of three with allowShrink", { file: "n1", voters: "n1 n2 n3", allowShrink: true }, { kind: "remove", id: "n2" }],
    ["the leader plus another of three with allowShrink: the other first", { file: "n3", voters: "n1 n2 n3", allowShrink: true }, { kind: "remove", id: "n2" }],
    ["replacing two of three with allowShrink: adds first", { file: "n1 n4 n5", voters: "n1 n2 n3", allowShrink: true }, { kind: "addLearner", id: "n4" }],
    ["voter -> learner of one of three", { file: "n1 n2 n3:l", voters: "n1 n2 n3" }, { kind: "demote", id: "n3" }],
    ["learner -> voter again", { file: "n1 n2 n3", voters: "n1 n2", learners: "n3" }, { kind: "promote", id: "n3" }],
  ])("not held: %s", (_name, c, want) => {
    expect(plan(c)).toEqual(want);
  });

  test("shrinkHold is what the planner holds on, for every node's /status", () => {
    expect(shrinkHold({ voters: ["n1", "n2", "n3"], nodes: [{ id: "n1" }], allowShrink: false })).toBe(MAJORITY("n2 n3", 3));
    expect(shrinkHold({ voters: ["n1", "n2", "n3"], nodes: [{ id: "n1" }], allowShrink: true })).toBeNull();
    expect(shrinkHold({ voters: ["n1", "n2", "n3"], nodes: [{ id: "n1" }, { id: "n2" }], allowShrink: false })).toBeNull();
    // Not bootstrapped: nothing to hold.
    expect(shrinkHold({ voters: [], nodes: [], allowShrink: false })).toBeNull();
  });

  test("a member with no progress entry counts as inactive at match 0", () => {
    const i = input({ file: "n1 n2 n3 n4", voters: "n1 n2 n3", learners: "n4" });
    const progress = new Map(i.progress);
    progress.delete("n4");
    expect(planNextStep({ ...i, progress })).toEqual({ kind: "wait", reason: "waiting to promote learners to voters: n4 has not been heard from recently" });
  });
});

// ---------------------------------------------------------------- simulation

const ALL = ["n1", "n2", "n3", "n4", "n5", "n6"];

interface Sim {
  voters: Set<string>;
  learners: Set<string>;
  leader: string;
  match: Map<string, number>;
  lastIndex: number;
}

function confOf(s: Sim, outgoing: readonly string[] = []): ConfState {
  return { voters: [...s.voters].sort(), votersOutgoing: [...outgoing].sort(), learners: [...s.learners].sort(), learnersNext: [] };
}

function planFor(s: Sim, file: PlanNode[], active: ReadonlySet<string>, o: { outgoing?: readonly string[]; allowShrink?: boolean } = {}): PlanStep {
  const progress = new Map<string, PeerProgress>();
  for (const id of [...s.voters, ...s.learners]) progress.set(id, { match: s.match.get(id) ?? 0, recentActive: active.has(id) });
  return planNextStep({ nodes: file, conf: confOf(s, o.outgoing), leaderId: s.leader, progress, lastIndex: s.lastIndex, catchUpLagMax: LAG_MAX, allowShrink: o.allowShrink });
}

/** Applies a change step like the driver would; returns false for wait/refuse/none. */
function apply(s: Sim, step: PlanStep): boolean {
  switch (step.kind) {
    case "addLearner":
      expect(s.voters.has(step.id) || s.learners.has(step.id)).toBe(false);
      s.learners.add(step.id);
      s.match.set(step.id, 0);
      break;
    case "promote":
      expect(s.learners.delete(step.id)).toBe(true);
      s.voters.add(step.id);
      break;
    case "demote":
      expect(step.id).not.toBe(s.leader);
      expect(s.voters.delete(step.id)).toBe(true);
      s.learners.add(step.id);
      break;
    case "remove":
      expect(step.id).not.toBe(s.leader);
      expect(s.voters.delete(step.id) || s.learners.delete(step.id)).toBe(true);
      s.match.delete(step.id);
      break;
    case "transferLeader":
      expect(s.voters.has(step.to)).toBe(true);
      expect(step.to).not.toBe(s.leader);
      s.leader = step.to;
      return true;
    default:
      return false;
  }
  // A configuration change is a log entry, replicated to the leader at once.
  s.lastIndex++;
  s.match.set(s.leader, s.lastIndex);
  return true;
}

const fileArb = fc
  .subarray(ALL, { minLength: 0 })
  .chain((present) => fc.tuple(fc.constant(present), fc.array(fc.boolean(), { minLength: present.length, maxLength: present.length })))
  .map(([present, learner]) => present.map((id, i): PlanNode => (learner[i] ? { id, role: "learner" } : { id })));

const simArb = fc
  .tuple(fc.subarray(ALL, { minLength: 1 }), fc.subarray(ALL), fc.nat(), fc.array(fc.nat({ max: 100 }), { minLength: 6, maxLength: 6 }))
  .map(([voters, maybeLearners, leaderPick, matches]): Sim => {
    const learners = maybeLearners.filter((id) => !voters.includes(id));
    const match = new Map<string, number>();
    ALL.forEach((id, i) => match.set(id, matches[i] ?? 0));
    const leader = voters[leaderPick % voters.length]!;
    match.set(leader, 100);
    return { voters: new Set(voters), learners: new Set(learners), leader, match, lastIndex: 100 };
  });

/** fast-check may hand the same value to several runs while shrinking: never mutate it. */
function cloneSim(s: Sim): Sim {
  return { voters: new Set(s.voters), learners: new Set(s.learners), leader: s.leader, match: new Map(s.match), lastIndex: s.lastIndex };
}

function checkInvariants(s: Sim): void {
  expect(s.voters.size).toBeGreaterThan(0);
  expect(s.voters.has(s.leader)).toBe(true);
  for (const id of s.learners) expect(s.voters.has(id)).toBe(false);
}

describe("planNextStep: simulated convergence", () => {
  test("with every node up, applying the planned steps converges to the file, or holds it and changes nothing", () => {
    fc.assert(
      fc.property(simArb, fileArb, fc.boolean(), (s0, file, allowShrink) => {
        const s = cloneSim(s0);
        const all = new Set(ALL);
        const fileVoters = file.filter((n) => n.role !== "learner").map((n) => n.id);
        const leaving = [...s0.voters].filter((id) => !fileVoters.includes(id));
        const held = fileVoters.length === 0 || (!allowShrink && 2 * leaving.length > s0.voters.size);
        let last: PlanStep = { kind: "none" };
        for (let round = 0; round < 100; round++) {
          const before = [...s.voters];
          last = planFor(s, file, all, { allowShrink });
          // Rule 0b is stable: a held file never moves, one not held never becomes held.
          expect(last.kind === "hold").toBe(held);
          if (!apply(s, last)) {
            if (last.kind !== "wait") break;
            // Waiting: followers catch up.
            for (const id of [...s.voters, ...s.learners]) s.match.set(id, s.lastIndex);
            continue;
          }
          checkInvariants(s);
          // While the change is in the log the configuration is joint: the planner waits.
          if (last.kind !== "transferLeader") expect(planFor(s, file, all, { outgoing: before, allowShrink }).kind).toBe("wait");
        }
        if (held) {
          expect([...s.voters].sort()).toEqual([...s0.voters].sort());
          expect([...s.learners].sort()).toEqual([...s0.learners].sort());
          return;
        }
        expect(last).toEqual({ kind: "none" });
        expect([...s.voters].sort()).toEqual([...fileVoters].sort());
        expect([...s.learners].sort()).toEqual(file.filter((n) => n.role === "learner").map((n) => n.id).sort());
      }),
      { numRuns: 1000 },
    );
  });

  test("with nodes going up and down, no step leaves zero voters or a voter set without an active majority", () => {
    const activity = fc.array(fc.subarray(ALL), { minLength: 60, maxLength: 60 });
    fc.assert(
      fc.property(simArb, fileArb, activity, fc.boolean(), (s0, file, rounds, allowShrink) => {
        const s = cloneSim(s0);
        const fileVoters = new Set(file.filter((n) => n.role !== "learner").map((n) => n.id));
        for (const up of rounds) {
          const active = new Set(up);
          active.add(s.leader);
          const votersBefore = s.voters.size;
          const activeVotersBefore = [...s.voters].filter((id) => active.has(id)).length;
          const step = planFor(s, file, active, { allowShrink });
          if (step.kind === "promote") {
            expect(active.has(step.id)).toBe(true);
            expect(s.lastIndex - (s.match.get(step.id) ?? 0)).toBeLessThanOrEqual(LAG_MAX);
          }
          const leaving = [...s.voters].filter((id) => !fileVoters.has(id));
          const changed = apply(s, step);
          checkInvariants(s);
          // Never a majority of the voters out in one edit unless allowed, never to no voters at all.
          if (changed && step.kind !== "transferLeader" && step.kind !== "addLearner" && step.kind !== "promote") {
            expect(fileVoters.size).toBeGreaterThan(0);
            if (!allowShrink) expect(2 * leaving.length).toBeLessThanOrEqual(votersBefore);
          }
          if (changed && step.kind !== "transferLeader") {
            // Every change is made from a configuration with a live majority, into one with a live majority.
            expect(activeVotersBefore).toBeGreaterThanOrEqual(quorum(votersBefore));
            const activeAfter = [...s.voters].filter((id) => active.has(id)).length;
            expect(activeAfter).toBeGreaterThanOrEqual(quorum(s.voters.size));
          }
          if (step.kind === "transferLeader" && !active.has(step.to)) throw new Error(`transfer to inactive ${step.to}`);
          for (const id of active) if (s.voters.has(id) || s.learners.has(id)) s.match.set(id, s.lastIndex);
        }
      }),
      { numRuns: 500 },
    );
  });
});

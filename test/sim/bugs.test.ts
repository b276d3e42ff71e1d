/**
 * The checkers can fail: with a known protocol bug switched on (test-only
 * options), the simulator must report a violation within a bounded number of
 * seeds. Seeds are fixed, so each of these is deterministic.
 */
import { expect, test } from "bun:test";
import { runSeed, type SimBugs, type StorageMode } from "./sim.ts";

function firstFailure(bugs: SimBugs, seedsMax: number, opts: { nodes: 3 | 5; profile?: "mixed" | "harsh"; storage?: StorageMode }) {
  for (let seed = 0; seed < seedsMax; seed++) {
    const r = runSeed({ seed, steps: 2000, nodes: opts.nodes, bugs, profile: opts.profile, storage: opts.storage });
    if (!r.ok) return { seed, check: r.failure.check, replay: r.failure.replay };
  }
  return undefined;
}

test("voting without the up-to-date check (§5.4.1) is caught as a leader completeness violation", () => {
  const found = firstFailure({ voteWithoutLogCheck: true }, 300, { nodes: 3 });
  expect(found).toBeDefined();
  expect(found!.check).toBe("leader completeness");
  expect(found!.replay).toContain(`--seed ${found!.seed}`);
}, 120_000);

test("committing an earlier term's entry by counting replicas (§5.4.2, Figure 8) is caught", () => {
  const found = firstFailure({ commitOldTermByCount: true }, 1000, { nodes: 3, profile: "harsh" });
  expect(found).toBeDefined();
  expect(["leader completeness", "committed entry changed", "state machine safety"]).toContain(found!.check);
}, 120_000);

test("applying (and sending) before persisting is caught", () => {
  const found = firstFailure({ applyBeforePersist: true }, 300, { nodes: 3 });
  expect(found).toBeDefined();
  // Typically the restarted node's state machine is ahead of its durable log (the core's
  // restart assertion), or a lost vote elects two leaders in one term.
  expect(["assertion", "election safety", "leader completeness", "committed entry changed", "log matching", "state machine safety", "liveness"]).toContain(found!.check);
}, 120_000);

test("a driver that sends a Ready's messages before persisting its hard state and entries is caught", () => {
  const found = firstFailure({ sendBeforePersist: true }, 300, { nodes: 3 });
  expect(found).toBeDefined();
  // A vote or an append acknowledgement that left before the crash that lost it: two leaders in one
  // term, or a committed entry a majority no longer holds.
  expect(["election safety", "leader completeness", "committed entry changed", "log matching", "state machine safety", "assertion"]).toContain(found!.check);
  expect(found!.replay).toContain("--bug sendBeforePersist");
}, 120_000);

test("a driver that acknowledges an append (or grants a vote) before its asynchronous write is durable is caught", () => {
  const found = firstFailure({ ackBeforeDurable: true }, 300, { nodes: 3, storage: "async" });
  expect(found).toBeDefined();
  // The acknowledgement counted toward a commit (or the vote elected a leader) that the crash then took back.
  expect(["election safety", "leader completeness", "committed entry changed", "log matching", "state machine safety", "assertion"]).toContain(found!.check);
  expect(found!.replay).toContain("--bug ackBeforeDurable");
  expect(found!.replay).toContain("--storage async");
}, 120_000);

test("the same seed replays the same run", () => {
  const a = runSeed({ seed: 77, steps: 1500, nodes: 5 });
  const b = runSeed({ seed: 77, steps: 1500, nodes: 5 });
  expect(a.ok && b.ok).toBe(true);
  if (a.ok && b.ok) expect(a.stats).toEqual(b.stats);
}, 120_000);

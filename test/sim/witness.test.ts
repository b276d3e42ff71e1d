/**
 * The witness workload (2 data nodes + 1 witness, src/raft/witness.ts) under
 * the simulator's faults: crashes of any node, partitions, a nemesis that cuts
 * a data follower off so that the leader and the witness alone commit. Every
 * existing check holds, plus "a data voter never needs a snapshot from the
 * witness"; and the witness rule broken on purpose is caught.
 */
import { expect, test } from "bun:test";
import { runSeed } from "./sim.ts";

const SEEDS = 600;

test(`the witness workload finds no violation in ${SEEDS} seeds x 2000 steps, and the witness really leads and hands off`, () => {
  let witnessLeads = 0;
  let commits = 0;
  let crashes = 0;
  for (let seed = 0; seed < SEEDS; seed++) {
    const r = runSeed({ seed, steps: 2000, nodes: 3, witness: true });
    if (!r.ok) throw new Error(r.failure.report());
    witnessLeads += r.stats.witnessLeads ?? 0;
    commits += r.stats.commits;
    crashes += r.stats.crashes;
  }
  console.log(`witness sim: ${SEEDS} seeds, ${commits} commits, ${crashes} crashes, the witness led ${witnessLeads} terms`);
  expect(commits).toBeGreaterThan(10 * SEEDS);
  expect(witnessLeads).toBeGreaterThan(SEEDS / 4);
}, 300_000);

test("a witness that compacts up to its commit (ignoring the data voters) is caught", () => {
  let found: string | undefined;
  for (let seed = 0; seed < 300 && !found; seed++) {
    const r = runSeed({ seed, steps: 2000, nodes: 3, witness: true, bugs: { witnessCompactsCommitted: true } });
    if (!r.ok) found = r.failure.check;
  }
  expect(found).toBe("witness rule");
}, 300_000);

/**
 * The short chaos runs of CI: two seeded runs of mixed faults on 3 nodes of
 * the built binary (each in its own network namespace where the machine
 * allows; process faults only on loopback where it does not). Safety is
 * asserted; availability is printed, and asserted only loosely (every node
 * agrees again after the heal). `bun run chaos --minutes N` is the long soak.
 */
import { describe, expect, test } from "bun:test";
import { runChaos, type ChaosReport } from "./run.ts";

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 40);
const SEEDS = (process.env.CHAOS_SEEDS ?? "11,12").split(",").map(Number);

function show(r: ChaosReport): string {
  const heals = r.heal.map((h) => (h.ms === null ? ">30000" : String(h.ms))).join(" ");
  return `chaos seed ${r.seed}: ${r.ops} kv ops, ${r.changes} change posts, ${r.applied.length} faults (netns ${r.netns}); longest write gap ${r.longestWriteGapMs} ms; heal to writable (ms) ${heals}; peak RSS MB ${JSON.stringify(r.peakRssMb)}\n  ${r.applied.join("\n  ")}`;
}

describe("chaos", () => {
  for (const seed of SEEDS) {
    test(`seed ${seed}: 3 nodes under mixed faults keep every history linearizable and every feed identical`, async () => {
      const r = await runChaos({ seed, nodes: 3, faultSeconds: SECONDS, log: () => {} });
      console.log(show(r));
      if (r.savedTo) console.log(`history saved in ${r.savedTo}`);
      expect(r.problems).toEqual([]);
      expect(r.tooComplex).toEqual([]);
      expect(r.applied.length).toBeGreaterThan(0);
      expect(r.ops).toBeGreaterThan(100);
      expect(r.planted.length).toBeGreaterThan(0); // the checkers could fail on this history, and did when planted
    }, (SECONDS + 200) * 1000);
  }
});

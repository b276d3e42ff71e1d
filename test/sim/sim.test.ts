/**
 * CI's simulation run: 2,000 seeds of 2,000 steps, 3- and 5-node clusters
 * alternating, split over two processes (CI machines have two cores). Any
 * failing seed prints its replay command (`bun run sim --seed S ...`).
 */
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";

const SEEDS = 2000;
const STEPS = 2000;

function runRange(lo: number, hi: number): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["run", "test/sim/cli.ts", "--seeds", `${lo}..${hi}`, "--steps", String(STEPS), "--json"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => resolve({ code: code ?? -1, out, err }));
  });
}

test(`the simulator finds no safety or liveness violation in ${SEEDS} seeds x ${STEPS} steps`, async () => {
  const half = SEEDS / 2;
  const results = await Promise.all([runRange(0, half - 1), runRange(half, SEEDS - 1)]);
  let runs = 0;
  for (const r of results) {
    if (r.code !== 0) console.error(r.err);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out.trim().split("\n").pop()!);
    expect(summary.ok).toBe(true);
    // The workload really ran: entries were committed, leaders elected, reads answered.
    expect(summary.total.commits).toBeGreaterThan(10 * half);
    expect(summary.total.elections).toBeGreaterThan(half);
    expect(summary.total.reads).toBeGreaterThan(half);
    expect(summary.total.confChanges).toBeGreaterThan(half / 4);
    expect(summary.total.snapshots).toBeGreaterThan(half);
    runs += summary.runs;
    console.log(`sim ${JSON.stringify(summary)}`);
  }
  expect(runs).toBe(SEEDS);
}, 600_000);

/**
 * What the wrk and growth benchmarks take from the test harness, in one place
 * (so that moving the harness changes only this file), and the command-line
 * options they both take.
 */
import { join } from "node:path";
import { ROOT } from "../harness/cluster.ts";

export { BINARY, E2ECluster, ROOT, Writer, ensureBinary } from "../harness/cluster.ts";
export { waitFor } from "../harness/ports.ts";

/** parseArgs options of both: the length of each run, the smoke switch and where results go (see resultsPath). */
export const RUN_OPTIONS = {
  seconds: { type: "string" },
  quick: { type: "boolean", default: false },
  out: { type: "string" },
} as const;

/** A whole-number option of at least `min`; `fallback` when it is not given. */
export function whole(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number of at least ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** --out, else bench/RESULTS.md; a --quick run (the smoke test) writes results only with --out. */
export function resultsPath(out: string | undefined, quick: boolean): string | undefined {
  return out ?? (quick ? undefined : join(ROOT, "bench", "RESULTS.md"));
}

/**
 * bench/growth.ts --quick: the growth benchmark end to end with a small
 * state (20,000 changes, 2,000 keys, 1 s of wrk, 50 + 50 readers), so that
 * it keeps working; its numbers are not checked against the targets.
 */
import { expect, test } from "bun:test";
import { runQuick, smokeSkipWhy } from "./smoke.ts";

const skipWhy = smokeSkipWhy("growth");

test.skipIf(skipWhy !== null)("bench/growth.ts --quick loads a state, measures it and fans one change out to every reader", () => {
  const text = runQuick({ name: "growth", timeoutMs: 170_000 });
  expect(text).toContain("## Growth (bench/growth.ts)");
  expect(text).toMatch(/\| empty \| n1 \d+, n2 \d+, n3 \d+ \|/);
  expect(text).toMatch(/\| loaded \| n1 \d+, n2 \d+, n3 \d+ \|/);
  // Every reader got the change in every round (2 rounds x 50 of each kind).
  expect(text).toMatch(/\| long poll \| 100 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
  expect(text).toMatch(/\| SSE \| 100 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
  for (const t of ["resident memory under 150 MB", "restart to ready under 5 s", "within 10% of an empty store's", "long-polling readers, p99 under 50 ms", "SSE subscribers, p99 under 50 ms"]) {
    expect(text).toMatch(new RegExp(`\\| [^|]*${t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[^|]* \\| \\*\\*(met|missed)\\*\\*: `));
  }
}, 180_000);

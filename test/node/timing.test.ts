/**
 * Timing derived once from the cluster file's raft section (src/node/timing.ts):
 * a reload that changes the timings changes no use of them (the core rebuilt
 * afterwards keeps the ticks the rest of the node was started with) and says so.
 */
import { afterEach, expect, test } from "bun:test";
import type { CairnNode } from "../../src/node/node.ts";
import { nodeTiming, timingChange } from "../../src/node/timing.ts";
import type { Db } from "../../src/platform/sqlite.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/** The election timeout, in ticks, of the core the node runs now. */
function coreElectionTicks(n: CairnNode): number {
  return (n as unknown as { raft: { cfg: { electionTicks: number } } }).raft.cfg.electionTicks;
}

test("every duration follows from the raft section: ticks, stall threshold, removal check, transfer timeout", () => {
  const t = nodeTiming({ heartbeatMs: 100, electionMs: 1000 });
  expect(t).toMatchObject({ tickMs: 50, heartbeatTicks: 2, electionTicks: 20, stallMs: 1000, removalCheckMs: 1000, transferTimeoutMs: 2000, contactTicksMax: 7 });
  expect(timingChange(t, { heartbeatMs: 100, electionMs: 1000 })).toBeNull();
  expect(timingChange(t, { heartbeatMs: 100, electionMs: 3000 })).toContain("(in use: 100, 1000): until then every use keeps the timings in use");
});

test("a reload that changes the raft timings is refused for every use: a core rebuilt after it keeps the old election ticks, and status says why", async () => {
  c = await inprocCluster(["n1"]);
  const n = await c.start("n1");
  await c.leader();
  const before = coreElectionTicks(n);
  n.updateConfig({ ...c.config, raft: { heartbeatMs: c.config.raft.heartbeatMs, electionMs: c.config.raft.electionMs * 4 } });
  expect(n.status().problems.some((p) => p.includes("raft timings changed") && p.includes("until then every use keeps"))).toBe(true);
  // A full disk rebuilds the core from what is durable (node.ts rebuildRaft): it must not pick up the new file's timings.
  const db = (n as unknown as { store: { db: Db } }).store.db;
  const pages = db.prepare("PRAGMA page_count").get()!.page_count as number;
  db.prepare(`PRAGMA max_page_count = ${pages}`).get();
  const big = { op: "changes" as const, items: [{ data: { pad: "x".repeat(64 * 1024) }, tags: [] }], ts: Date.now() };
  await n.propose(big).catch(() => undefined);
  await waitFor("the node to report the full disk", () => n.status().problems.some((p) => p.includes("full")) || null, 5000);
  expect(coreElectionTicks(n)).toBe(before);
  expect(n.timing.electionTicks).toBe(before);
}, 20_000);

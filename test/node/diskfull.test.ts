import { afterEach, expect, test } from "bun:test";
import type { CairnNode } from "../../src/node/node.ts";
import { DiskFullError, StoppedError } from "../../src/node/errors.ts";
import { buildCheckpointFile } from "../../src/checkpoint/build.ts";
import { DiskFullError as DbDiskFullError, type Db } from "../../src/platform/sqlite.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/** The node's database refuses to grow: the next write that needs a page fails with SQLITE_FULL. */
function fillDisk(n: CairnNode): Db {
  const db = (n as unknown as { store: { db: Db } }).store.db;
  const pages = db.prepare("PRAGMA page_count").get()!.page_count as number;
  db.prepare(`PRAGMA max_page_count = ${pages}`).get();
  return db;
}

/** Settles within `ms` or says it did not. */
async function settled<T>(p: Promise<T>, ms: number): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | "pending"> {
  const timeout = new Promise<"pending">((r) => setTimeout(() => r("pending"), ms));
  return await Promise.race([p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })), timeout]);
}

const big = () => ({ op: "changes" as const, items: [{ data: { pad: "x".repeat(64 * 1024) }, tags: [] }], ts: Date.now() });

test("writes whose entries a full disk refused answer DiskFullError at once (?wait=none and applied), not hang or time out", async () => {
  c = await inprocCluster(["n1"], { node: { proposeTimeoutMs: 30_000 } });
  const n = await c.start("n1");
  await c.leader();
  await n.propose({ op: "changes", items: [{ data: 1, tags: [] }], ts: Date.now() });
  fillDisk(n);
  const accepted = n.propose(big(), { wait: "accepted" });
  const applied = n.propose(big());
  const a = await settled(accepted, 3000);
  const b = await settled(applied, 3000);
  expect(a !== "pending" && !a.ok && a.error).toBeInstanceOf(DiskFullError);
  expect(b !== "pending" && !b.ok && b.error).toBeInstanceOf(DiskFullError);
}, 20_000);

test("a ?wait=none write still waiting for its log entry when the node stops gets StoppedError, not a promise that never settles", async () => {
  c = await inprocCluster(["n1"]);
  const n = await c.start("n1");
  await c.leader();
  const accepted = n.propose(big(), { wait: "accepted" });
  await n.stop({ transfer: false });
  const a = await settled(accepted, 1000);
  expect(a !== "pending" && !a.ok && a.error).toBeInstanceOf(StoppedError);
}, 20_000);

test("a full disk while the feed is trimmed (on a tick) is logged and retried later; it does not escape the tick and kill the node", async () => {
  c = await inprocCluster(["n1"], { node: { retention: { keepEntries: 1, keepAgeMs: 0 }, checkpointRunner: async (r) => buildCheckpointFile(r) } });
  let n = await c.start("n1");
  await c.leader();
  for (let i = 0; i < 5; i++) await n.propose({ op: "changes", items: [{ data: i, tags: [] }], ts: Date.now() });
  expect(await n.createCheckpoint()).not.toBeNull();
  await c.stop("n1");
  n = await c.start("n1"); // the first tick after a start trims at once: a checkpoint covers the feed
  let tried = 0;
  n.fsm.trimFeed = () => {
    tried++;
    throw new DbDiskFullError("/full/cairn.db");
  };
  await waitFor("a trim attempt", () => tried > 0);
  await c.leader();
  const out = await n.propose({ op: "changes", items: [{ data: "after", tags: [] }], ts: Date.now() });
  expect(out.kind).toBe("applied");
  expect(c.logs.some((l) => l.includes("feed retention") && l.includes("full"))).toBe(true);
}, 20_000);

import { afterEach, expect, test } from "bun:test";
import type { CairnNode } from "../../src/node/node.ts";
import { DiskFull } from "../../src/node/diskfull.ts";
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

// ---------------------------------------------------------------- diskfull.ts alone, over a fake store and clock

function fakeDisk(): { d: DiskFull; full: { value: boolean }; persists: number; rebuilt: Error[]; scheduled: number; counters: { diskFull: number }; errors: string[] } {
  const r = { full: { value: true }, persists: 0, rebuilt: [] as Error[], scheduled: 0, counters: { diskFull: 0 }, errors: [] as string[] } as ReturnType<typeof fakeDisk>;
  r.d = new DiskFull({
    store: () => ({
      path: "/data/raft.db",
      hardState: () => ({ term: 3, vote: "n1", commit: 9 }),
      persist: () => {
        r.persists++;
        if (r.full.value) throw new DbDiskFullError("/data/raft.db");
      },
    }),
    log: { error: (m: string) => void r.errors.push(m), info: () => {} },
    counters: r.counters,
    retryMs: 1000,
    rebuild: (lost) => void r.rebuilt.push(lost),
    schedule: () => void r.scheduled++,
  });
  return r;
}

test("a refused Ready rebuilds the core and fails the lost writers with the one DiskFullError; writes are refused with it until space returns", () => {
  const r = fakeDisk();
  expect(r.d.error()).toBeNull();
  r.d.onFull("database /data/raft.db is full", 0, 3);
  r.d.onFull("database /data/raft.db is full", 10, 3); // a second refusal: counted and rebuilt, logged once
  expect(r.counters.diskFull).toBe(2);
  expect(r.errors).toHaveLength(1);
  expect(r.rebuilt).toHaveLength(2);
  expect(r.rebuilt[0]).toBeInstanceOf(DbDiskFullError);
  // The node's DiskFullError is the storage layer's: one class, whatever raised it.
  expect(DiskFullError).toBe(DbDiskFullError);
  expect(r.d.full).toBe(true);
  expect(r.d.error()).toBeInstanceOf(DiskFullError);
});

test("the disk is probed with an empty durable write only retryMs after it was last seen full; writes resume when it succeeds", () => {
  const r = fakeDisk();
  r.d.onFull("full", 0, 1);
  r.d.maybeRetry(500);
  expect(r.persists).toBe(0); // too soon
  r.d.maybeRetry(1001);
  expect(r.persists).toBe(1); // still full: seen full again now
  r.d.maybeRetry(1900);
  expect(r.persists).toBe(1);
  r.full.value = false;
  r.d.maybeRetry(2002);
  expect(r.persists).toBe(2);
  expect(r.d.full).toBe(false);
  expect(r.d.error()).toBeNull();
  expect(r.scheduled).toBe(1);
  r.d.maybeRetry(5000);
  expect(r.persists).toBe(2); // nothing to probe once space is back
});

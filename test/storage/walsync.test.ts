/**
 * WalSync and RaftStore.persistAsync (src/storage/walsync.ts): the commit is
 * in the file at once, done follows an fsync of the WAL file itself (checked
 * by inode), callbacks keep call order, requests share the fsync in flight,
 * and a failed fsync fails that request and every later one. Real SQLite
 * files in a temp directory; the fsync is wrapped (counted, or failed) only
 * where the test says so.
 */
import { afterEach, expect, test } from "bun:test";
import { fstatSync, fsync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RaftStore } from "../../src/storage/store.ts";
import { WalSync, WalSyncError, type FsyncFn } from "../../src/storage/walsync.ts";
import type { Entry } from "../../src/raft/index.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "cairn-walsync-"));
  dirs.push(d);
  return d;
}

/** A real fsync that records the inode of every descriptor it syncs (one entry per sync). */
function recordingFsync(): { fsync: FsyncFn; synced: number[] } {
  const synced: number[] = [];
  return {
    synced,
    fsync: (fd, done) => {
      synced.push(fstatSync(fd).ino);
      fsync(fd, done);
    },
  };
}

/** A store whose WAL syncs are recorded, with its open-time sync already done and not recorded. */
async function recordingStore(dir: string): Promise<{ store: RaftStore; synced: number[] }> {
  const rec = recordingFsync();
  const store = RaftStore.open({ dir, walFsync: rec.fsync });
  await settled(store);
  rec.synced.length = 0;
  return { store, synced: rec.synced };
}

function entries(from: number, n: number, bytes = 100): Entry[] {
  return Array.from({ length: n }, (_, k) => ({ index: from + k, term: 1, kind: "normal" as const, data: new Uint8Array(bytes).fill(k % 251) }));
}

/** Waits for `done` callbacks: resolves once `count` of them ran, with their errors in call order. */
function collector(count: number): { cb: (k: number) => (err?: unknown) => void; all: Promise<{ k: number; err?: unknown }[]> } {
  const seen: { k: number; err?: unknown }[] = [];
  let resolve!: (v: { k: number; err?: unknown }[]) => void;
  const all = new Promise<{ k: number; err?: unknown }[]>((r) => (resolve = r));
  return {
    cb: (k) => (err) => {
      seen.push({ k, err });
      if (seen.length === count) resolve(seen);
    },
    all,
  };
}

/** Waits until the store's open-time WAL sync completed (an empty write completes after it). */
function settled(store: RaftStore): Promise<unknown> {
  return new Promise((resolve) => store.persistAsync({ entries: [] }, resolve));
}

test("persistAsync commits at once, runs done after an fsync of the store's own WAL file, and the write survives a reopen", async () => {
  const dir = tempDir();
  const { store, synced } = await recordingStore(dir);
  const c = collector(1);
  store.persistAsync({ entries: entries(1, 3), hardState: { term: 1, vote: "n1", commit: 0 } }, c.cb(0));
  expect(store.lastIndex()).toBe(3); // visible before it is durable
  const [r] = await c.all;
  expect(r!.err).toBeUndefined();
  expect(synced).toEqual([statSync(`${store.path}-wal`).ino]);
  store.close();
  const again = RaftStore.open({ dir });
  expect(again.lastIndex()).toBe(3);
  expect(again.hardState()).toEqual({ term: 1, vote: "n1", commit: 0 });
  again.close();
});

test("persistAsync's done callbacks run in call order, and the writes made while an fsync is in flight share the next one", async () => {
  const dir = tempDir();
  const { store, synced } = await recordingStore(dir);
  const n = 50;
  const c = collector(n);
  for (let k = 0; k < n; k++) store.persistAsync({ entries: entries(k + 1, 1) }, c.cb(k));
  const seen = await c.all;
  expect(seen.map((s) => s.k)).toEqual(Array.from({ length: n }, (_, k) => k));
  expect(seen.every((s) => s.err === undefined)).toBe(true);
  // The first write's fsync was in flight while the other 49 were made: one more covers them all.
  expect(synced.length).toBe(2);
  store.close();
});

test("a commit-index-only write needs no fsync of its own but completes after the sync before it", async () => {
  const dir = tempDir();
  const { store, synced } = await recordingStore(dir);
  const order: string[] = [];
  const c = collector(2);
  store.persistAsync({ entries: entries(1, 2), hardState: { term: 1, vote: "", commit: 0 } }, (e) => {
    order.push("entries");
    c.cb(0)(e);
  });
  store.persistAsync({ entries: [], hardState: { term: 1, vote: "", commit: 2 } }, (e) => {
    order.push("commit");
    c.cb(1)(e);
  });
  expect(order).toEqual([]); // the commit-only write waits for the entries' fsync
  await c.all;
  expect(order).toEqual(["entries", "commit"]);
  expect(synced.length).toBe(1);
  // Nothing pending: a commit-only write completes at once.
  let now = false;
  store.persistAsync({ entries: [], hardState: { term: 1, vote: "", commit: 2 } }, () => (now = true));
  expect(now).toBe(true);
  store.close();
});

test("the WAL descriptor stays the WAL file's across SQLite's checkpoints and WAL restarts", async () => {
  const dir = tempDir();
  const { store, synced } = await recordingStore(dir);
  // 2,000 entries of 4 KiB: far past the 1,000-page auto-checkpoint, so the WAL is checkpointed and restarted.
  for (let k = 0; k < 20; k++) {
    const c = collector(1);
    store.persistAsync({ entries: entries(k * 100 + 1, 100, 4096) }, c.cb(0));
    await c.all;
  }
  expect(new Set(synced)).toEqual(new Set([statSync(`${store.path}-wal`).ino]));
  expect(statSync(`${store.path}-wal`).size).toBeLessThan(2000 * 4096); // it was restarted, not grown
  store.close();
});

test("a failed fsync fails its writes and every later one with WalSyncError (nothing after it is trusted)", async () => {
  const dir = tempDir();
  const wal = new WalSync({ walPath: join(dir, "x-wal"), fsync: (_fd, done) => queueMicrotask(() => done(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }))) });
  // The file must exist: the syncer opens it at its first fsync.
  await Bun.write(join(dir, "x-wal"), "frames");
  const c = collector(3);
  wal.sync(c.cb(0));
  wal.sync(c.cb(1));
  wal.after(c.cb(2));
  const seen = await c.all;
  expect(seen.map((s) => s.k)).toEqual([0, 1, 2]);
  for (const s of seen) expect(s.err).toBeInstanceOf(WalSyncError);
  expect(String((seen[0]!.err as Error).message)).toContain("x-wal");
  let late: unknown;
  wal.sync((e) => (late = e));
  expect(late).toBeInstanceOf(WalSyncError);
  wal.close();
});

test("a reopened store syncs its WAL before any persistAsync completes: what a process crash left unsynced is not acknowledged as durable", async () => {
  const dir = tempDir();
  const first = RaftStore.open({ dir });
  // As a crash after a NORMAL commit leaves it: the transaction is in the WAL, its fsync never ran.
  first.persistAsync({ entries: entries(1, 3), hardState: { term: 1, vote: "n1", commit: 0 } }, () => undefined);
  const rec = recordingFsync();
  const again = RaftStore.open({ dir, walFsync: rec.fsync });
  expect(again.lastIndex()).toBe(3);
  // An empty write (a Ready that only acknowledges entries the log already holds) waits for the sync.
  const c = collector(1);
  again.persistAsync({ entries: [] }, c.cb(0));
  expect(rec.synced.length).toBe(1);
  const [r] = await c.all;
  expect(r!.err).toBeUndefined();
  again.close();
  first.close();
});

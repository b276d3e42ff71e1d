import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { openDatabase } from "../../src/platform/sqlite.ts";
import { CompactedError, UnavailableError } from "../../src/raft/errors.ts";
import type { ConfState, Entry } from "../../src/raft/types.ts";
import { DiskFullError, FormatVersionError, IdentityMismatchError, NotCairnDatabaseError } from "../../src/storage/errors.ts";
import { FORMAT_VERSION, prepareSchema, readVersion } from "../../src/storage/schema.ts";
import { DB_FILE_NAME, RaftStore, type StoreOptions } from "../../src/storage/store.ts";
import { caught, TempDirs } from "../platform/testutil.ts";

const tmp = new TempDirs();
const open: RaftStore[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  tmp.cleanup();
});

function openStore(opts: StoreOptions): RaftStore {
  const s = RaftStore.open(opts);
  open.push(s);
  return s;
}

function reopen(s: RaftStore, opts: Partial<StoreOptions> = {}): RaftStore {
  const dir = s.path.slice(0, -(DB_FILE_NAME.length + 1));
  s.close();
  open.splice(open.indexOf(s), 1);
  return openStore({ dir, ...opts });
}

const CONF: ConfState = { voters: ["n1", "n2", "n3"], votersOutgoing: [], learners: [], learnersNext: [] };

function ent(index: number, term: number, text = `e${index}`): Entry {
  return { index, term, kind: "normal", data: new TextEncoder().encode(text) };
}

function ents(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(ent(i, term));
  return out;
}

describe("RaftStore", () => {
  test("a new store is empty and starts at index 1", () => {
    const s = openStore({ dir: tmp.make() });
    expect(s.firstIndex()).toBe(1);
    expect(s.lastIndex()).toBe(0);
    expect(s.term(0)).toBe(0);
    expect(s.initialState().hardState).toEqual({ term: 0, vote: "", commit: 0 });
    expect(s.snapshotMeta().index).toBe(0);
    expect(s.appliedIndex()).toBe(0);
    expect(s.formatVersion()).toBe(FORMAT_VERSION);
    expect(() => s.term(1)).toThrow(UnavailableError);
  });

  test("persisted entries, hard state and conf entries survive a reopen", () => {
    let s = openStore({ dir: tmp.make() });
    const conf: Entry = { index: 3, term: 2, kind: "conf", data: new Uint8Array(), conf: { op: "init", changes: [{ type: "addVoter", node: "n1" }] } };
    s.persist({ entries: [ent(1, 1), ent(2, 1), conf], hardState: { term: 2, vote: "n1", commit: 2 }, clusterId: "c-1" });
    s = reopen(s);
    expect(s.lastIndex()).toBe(3);
    expect(s.initialState().hardState).toEqual({ term: 2, vote: "n1", commit: 2 });
    expect(s.clusterId()).toBe("c-1");
    expect(s.entries(1, 4, Infinity)).toEqual([ent(1, 1), ent(2, 1), conf]);
    expect([s.term(1), s.term(2), s.term(3)]).toEqual([1, 1, 2]);
  });

  test("appending at an index below the last truncates the conflicting suffix", () => {
    let s = openStore({ dir: tmp.make() });
    s.persist({ entries: ents(1, 5, 1) });
    s.persist({ entries: [ent(3, 2, "new3"), ent(4, 2, "new4")] });
    expect(s.lastIndex()).toBe(4);
    expect(s.entries(3, 5, Infinity)).toEqual([ent(3, 2, "new3"), ent(4, 2, "new4")]);
    s = reopen(s);
    expect(s.lastIndex()).toBe(4);
    expect(s.term(4)).toBe(2);
    expect(s.entries(1, 5, Infinity).map((e) => e.term)).toEqual([1, 1, 2, 2]);
  });

  test("entries respects maxBytes but returns at least one entry", () => {
    const s = openStore({ dir: tmp.make(), entryCacheLengthMax: 2 }); // most reads miss the cache
    s.persist({ entries: ents(1, 10, 1) });
    expect(s.entries(1, 11, 0).map((e) => e.index)).toEqual([1]);
    expect(s.entries(1, 11, 3 * 26).map((e) => e.index)).toEqual([1, 2, 3]);
    expect(s.entries(9, 11, 0).map((e) => e.index)).toEqual([9]); // from the cache
    expect(s.entries(1, 11, Infinity)).toHaveLength(10);
  });

  test("terms and entries outside the small caches are read from the file", () => {
    let s = openStore({ dir: tmp.make(), termCacheLengthMax: 4, entryCacheLengthMax: 4 });
    for (let t = 1; t <= 10; t++) s.persist({ entries: ents(t * 10 - 9, t * 10, t) });
    for (let i = 1; i <= 100; i++) expect(s.term(i)).toBe(Math.ceil(i / 10));
    s = reopen(s, { termCacheLengthMax: 4 });
    for (let i = 1; i <= 100; i++) expect(s.term(i)).toBe(Math.ceil(i / 10));
    expect(s.entries(1, 101, Infinity).map((e) => e.index)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test("compaction needs a snapshot; compacted reads throw CompactedError; it survives a reopen", () => {
    let s = openStore({ dir: tmp.make() });
    s.persist({ entries: ents(1, 10, 3), hardState: { term: 3, vote: "n1", commit: 10 } });
    s.db.transaction(() => s.saveApplied(8, CONF));
    expect(() => s.compact(5)).toThrow("take a snapshot first");
    expect(s.createSnapshot(6, CONF)).toEqual({ index: 6, term: 3, conf: CONF });
    s.compact(6);
    expect(s.firstIndex()).toBe(7);
    expect(s.term(6)).toBe(3);
    expect(() => s.term(5)).toThrow(CompactedError);
    expect(() => s.entries(6, 8, Infinity)).toThrow(CompactedError);
    s = reopen(s);
    expect(s.firstIndex()).toBe(7);
    expect(s.lastIndex()).toBe(10);
    expect(s.term(6)).toBe(3);
    expect(s.snapshotMeta()).toEqual({ index: 6, term: 3, conf: CONF });
    expect(s.entries(7, 11, Infinity).map((e) => e.index)).toEqual([7, 8, 9, 10]);
    expect(() => s.entries(5, 8, Infinity)).toThrow(CompactedError);
    const e = caught(() => s.term(2));
    expect(e).toBeInstanceOf(CompactedError);
    expect((e as CompactedError).firstIndex).toBe(7);
  });

  test("compactApplied compacts up to the applied index with no checkpoint: the snapshot is the applied state (index, term, conf), in the same transaction; it survives a reopen", () => {
    let s = openStore({ dir: tmp.make() });
    s.persist({ entries: [...ents(1, 6, 2), ...ents(7, 10, 3)], hardState: { term: 3, vote: "n1", commit: 10 } });
    s.db.transaction(() => s.saveApplied(8, CONF));
    expect(() => s.compactApplied(9)).toThrow("beyond applied index 8");
    s.compactApplied(5);
    expect(s.firstIndex()).toBe(6);
    expect(s.snapshotMeta()).toEqual({ index: 8, term: 3, conf: CONF });
    expect(() => s.entries(5, 7, Infinity)).toThrow(CompactedError);
    // Again, up to the applied index itself: the log holds only what is not applied.
    s.compactApplied(8);
    expect(s.firstIndex()).toBe(9);
    expect(s.term(8)).toBe(3);
    s = reopen(s);
    expect(s.firstIndex()).toBe(9);
    expect(s.lastIndex()).toBe(10);
    expect(s.snapshotMeta()).toEqual({ index: 8, term: 3, conf: CONF });
    expect(s.entries(9, 11, Infinity).map((e) => e.index)).toEqual([9, 10]);
    expect(s.appliedIndex()).toBe(8);
    // Nothing to do at or below the start.
    s.compactApplied(8);
    expect(s.firstIndex()).toBe(9);
  });

  test("a persist that only moves the commit index skips its fsync (synchronous NORMAL for it), then FULL again; it is stored and survives a reopen", () => {
    let s = openStore({ dir: tmp.make() });
    const mode = () => Number(Object.values(s.db.prepare("PRAGMA synchronous").get()!)[0]);
    s.persist({ entries: ents(1, 3, 2), hardState: { term: 2, vote: "n1", commit: 1 } });
    let seen = -1;
    // The synchronous mode each persist's transaction runs in, read inside it.
    const orig = s.db.transaction.bind(s.db);
    s.db.transaction = ((fn: () => void) => orig(() => ((seen = mode()), fn()))) as typeof s.db.transaction;
    s.persist({ entries: [], hardState: { term: 2, vote: "n1", commit: 3 } });
    expect(seen).toBe(1); // NORMAL
    s.persist({ entries: [], hardState: { term: 3, vote: "", commit: 3 } });
    expect(seen).toBe(2); // a new term is fsynced
    s.persist({ entries: ents(4, 4, 3), hardState: { term: 3, vote: "", commit: 3 } });
    expect(seen).toBe(2); // entries are fsynced
    s.db.transaction = orig;
    expect(mode()).toBe(2);
    s = reopen(s);
    expect(s.hardState()).toEqual({ term: 3, vote: "", commit: 3 });
  });

  test("entries that are all compacted already are ignored; a partly compacted batch is cut", () => {
    const s = openStore({ dir: tmp.make() });
    s.persist({ entries: ents(1, 5, 1), hardState: { term: 1, vote: "", commit: 5 } });
    s.db.transaction(() => s.saveApplied(5));
    s.createSnapshot(4, CONF);
    s.compact(4);
    s.persist({ entries: ents(2, 3, 1) });
    expect(s.lastIndex()).toBe(5);
    s.persist({ entries: ents(3, 7, 2) });
    expect(s.firstIndex()).toBe(5);
    expect(s.entries(5, 8, Infinity).map((e) => [e.index, e.term])).toEqual([[5, 2], [6, 2], [7, 2]]);
  });

  test("installing a snapshot resets the log, sets applied state and commit, and survives a reopen", () => {
    let s = openStore({ dir: tmp.make() });
    s.persist({ entries: ents(1, 3, 1), hardState: { term: 1, vote: "n2", commit: 2 } });
    let restored = false;
    s.persist({
      snapshot: { index: 50, term: 4, conf: CONF },
      entries: [ent(51, 4)],
      hardState: { term: 4, vote: "", commit: 51 },
      restore: (db) => {
        expect(db.inTransaction).toBe(true);
        restored = true;
      },
    });
    expect(restored).toBe(true);
    s = reopen(s);
    expect([s.firstIndex(), s.lastIndex(), s.term(50), s.term(51)]).toEqual([51, 51, 4, 4]);
    expect(s.appliedIndex()).toBe(50);
    expect(s.initialState()).toEqual({ hardState: { term: 4, vote: "", commit: 51 }, confState: CONF });
    expect(() => s.entries(50, 52, Infinity)).toThrow(CompactedError);
  });

  test("a failing restore leaves the store as it was", () => {
    const s = openStore({ dir: tmp.make() });
    s.persist({ entries: ents(1, 3, 1) });
    expect(() =>
      s.installSnapshot({ index: 9, term: 2, conf: CONF }, () => {
        throw new Error("bad checkpoint");
      }),
    ).toThrow("bad checkpoint");
    expect([s.firstIndex(), s.lastIndex(), s.snapshotMeta().index, s.term(3)]).toEqual([1, 3, 0, 1]);
  });

  test("saveApplied stores the applied index and conf only inside a transaction", () => {
    let s = openStore({ dir: tmp.make() });
    expect(() => s.saveApplied(1)).toThrow("inside the transaction");
    s.db.transaction(() => s.saveApplied(3, CONF));
    s.db.transaction(() => s.saveApplied(4));
    s = reopen(s);
    expect(s.appliedIndex()).toBe(4);
    expect(s.confState()).toEqual(CONF);
  });

  test("node and cluster IDs are stored once; another node's or cluster's data is detected", () => {
    let s = openStore({ dir: tmp.make() });
    expect(s.nodeId()).toBeNull();
    s.checkIdentity({ nodeId: "n1", clusterId: "c" }); // nothing stored: nothing to mismatch
    s.setNodeId("n1");
    s.setClusterId("store-42-abc");
    s = reopen(s);
    expect([s.nodeId(), s.clusterId()]).toEqual(["n1", "store-42-abc"]);
    s.checkIdentity({ nodeId: "n1", clusterId: "store-42-abc" });
    expect(() => s.checkIdentity({ nodeId: "n2" })).toThrow(IdentityMismatchError);
    const e = caught(() => s.checkIdentity({ clusterId: "other" }));
    expect(e).toBeInstanceOf(IdentityMismatchError);
    expect((e as IdentityMismatchError).what).toBe("cluster");
    expect((e as IdentityMismatchError).stored).toBe("store-42-abc");
    expect(() => s.setClusterId("other")).toThrow(IdentityMismatchError);
    expect(() => s.persist({ entries: [], clusterId: "other" })).toThrow(IdentityMismatchError);
    expect(s.clusterId()).toBe("store-42-abc");
  });

  test("a full disk is DiskFullError: nothing is half-written, reads go on, writes resume", () => {
    const s = openStore({ dir: tmp.make() });
    s.persist({ entries: ents(1, 3, 1), hardState: { term: 1, vote: "n1", commit: 1 } });
    const pages = s.db.prepare("PRAGMA page_count").get()!.page_count as number;
    s.db.prepare(`PRAGMA max_page_count = ${pages + 1}`).get();
    const big = (i: number): Entry => ({ index: i, term: 2, kind: "normal", data: new Uint8Array(64 * 1024) });
    const err = caught(() => s.persist({ entries: [ent(3, 2), big(4), big(5)], hardState: { term: 2, vote: "n1", commit: 2 } }));
    expect(err).toBeInstanceOf(DiskFullError);
    // Nothing of the failed batch is visible, in memory or on disk.
    expect(s.lastIndex()).toBe(3);
    expect(s.term(3)).toBe(1);
    expect(s.hardState()).toEqual({ term: 1, vote: "n1", commit: 1 });
    expect(s.entries(1, 4, Infinity)).toEqual(ents(1, 3, 1));
    s.db.prepare("PRAGMA max_page_count = 1000000").get();
    s.persist({ entries: [ent(3, 2), big(4), big(5)], hardState: { term: 2, vote: "n1", commit: 2 } });
    expect([s.lastIndex(), s.term(3), s.hardState().term]).toEqual([5, 2, 2]);
  });
});

describe("format version", () => {
  test("a file from a newer cairn is refused with FormatVersionError naming both versions", () => {
    const dir = tmp.make();
    RaftStore.open({ dir }).close();
    const db = openDatabase(join(dir, DB_FILE_NAME));
    db.exec(`UPDATE meta SET value = ${FORMAT_VERSION + 1} WHERE key = 'format_version'`);
    db.close();
    const err = caught(() => RaftStore.open({ dir }));
    expect(err).toBeInstanceOf(FormatVersionError);
    expect((err as FormatVersionError).found).toBe(FORMAT_VERSION + 1);
    expect((err as FormatVersionError).supported).toBe(FORMAT_VERSION);
    expect((err as Error).message).toContain(`format version ${FORMAT_VERSION + 1}`);
    expect((err as Error).message).toContain("run a cairn release");
  });

  test("a SQLite file that is not cairn's is refused", () => {
    const dir = tmp.make();
    const db = openDatabase(join(dir, DB_FILE_NAME));
    db.exec("CREATE TABLE other (a)");
    db.close();
    expect(() => RaftStore.open({ dir })).toThrow(NotCairnDatabaseError);
  });

  test("an older file is migrated step by step, with a backup of the old version", () => {
    const dir = tmp.make();
    RaftStore.open({ dir }).close(); // version 1
    const migrations = [
      { from: 1, describe: "add a column", up: (db: ReturnType<typeof openDatabase>) => db.exec("ALTER TABLE raft_log ADD COLUMN extra TEXT") },
      { from: 2, describe: "add a table", up: (db: ReturnType<typeof openDatabase>) => db.exec("CREATE TABLE added (a)") },
    ];
    const s = RaftStore.open({ dir, schema: { current: 3, migrations } });
    expect(s.schema).toEqual({ foundVersion: 1, version: 3 });
    expect(readVersion(s.db)).toBe(3);
    expect(s.db.prepare("SELECT count(*) AS n FROM added").get()).toEqual({ n: 0 });
    s.close();
    const backup = openDatabase(join(dir, `${DB_FILE_NAME}.v1.bak`));
    expect(readVersion(backup)).toBe(1);
    backup.close();
  });

  test("a failing migration leaves the file at its old version", () => {
    const dir = tmp.make();
    RaftStore.open({ dir }).close();
    const db = openDatabase(join(dir, DB_FILE_NAME));
    const bad = [{ from: 1, describe: "fails", up: (d: typeof db) => { d.exec("CREATE TABLE half (a)"); throw new Error("migration bug"); } }];
    expect(() => prepareSchema(db, { current: 2, migrations: bad, backupBeforeMigrate: false })).toThrow("migration bug");
    expect(readVersion(db)).toBe(1);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined();
    db.close();
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DbError, DiskFullError, openDatabase } from "../../src/platform/sqlite.ts";
import { caught, TempDirs } from "./testutil.ts";

const tmp = new TempDirs();
afterEach(() => tmp.cleanup());

function fresh(opts?: Parameters<typeof openDatabase>[1]) {
  return openDatabase(join(tmp.make(), "t.db"), opts);
}

describe("sqlite adapter", () => {
  test("Uint8Array BLOBs round-trip as plain Uint8Array", () => {
    const db = fresh();
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB, n)");
    const bytes = new Uint8Array([0, 1, 2, 254, 255]);
    const r = db.prepare("INSERT INTO t (b, n) VALUES (?, ?)").run(bytes, 7);
    expect(r).toEqual({ changes: 1, lastInsertRowid: 1 });
    const row = db.prepare("SELECT b, n, typeof(n) AS tn FROM t WHERE id = ?").get(1)!;
    expect(row.b).toBeInstanceOf(Uint8Array);
    expect((row.b as Uint8Array).constructor).toBe(Uint8Array);
    expect(Array.from(row.b as Uint8Array)).toEqual([0, 1, 2, 254, 255]);
    expect(row.n).toBe(7);
    expect(row.tn).toBe("integer");
    db.close();
  });

  test("get returns undefined for no row; booleans and undefined bind as 1 and NULL", () => {
    const db = fresh();
    db.exec("CREATE TABLE t (a, b)");
    db.prepare("INSERT INTO t VALUES (?, ?)").run(true, undefined);
    expect(db.prepare("SELECT * FROM t").all()).toEqual([{ a: 1, b: null }]);
    expect(db.prepare("SELECT * FROM t WHERE a = 2").get()).toBeUndefined();
    db.close();
  });

  test("pragmas: WAL, synchronous FULL by default or NORMAL, foreign keys, busy timeout", () => {
    const db = fresh();
    expect(db.prepare("PRAGMA journal_mode").get()).toEqual({ journal_mode: "wal" });
    expect(db.prepare("PRAGMA synchronous").get()).toEqual({ synchronous: 2 });
    expect(db.prepare("PRAGMA foreign_keys").get()).toEqual({ foreign_keys: 1 });
    expect(db.prepare("PRAGMA busy_timeout").get()).toEqual({ timeout: 5000 });
    db.close();
    const normal = fresh({ synchronous: "NORMAL", busyTimeoutMs: 50 });
    expect(normal.prepare("PRAGMA synchronous").get()).toEqual({ synchronous: 1 });
    expect(normal.prepare("PRAGMA busy_timeout").get()).toEqual({ timeout: 50 });
    normal.close();
  });

  test("a transaction that throws is rolled back; one that returns is committed", () => {
    const db = fresh();
    db.exec("CREATE TABLE t (a)");
    expect(() =>
      db.transaction(() => {
        db.prepare("INSERT INTO t VALUES (1)").run();
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(db.inTransaction).toBe(false);
    expect(db.transaction(() => db.prepare("INSERT INTO t VALUES (2)").run().changes)).toBe(1);
    expect(db.prepare("SELECT a FROM t").all()).toEqual([{ a: 2 }]);
    db.close();
  });

  test("nested and asynchronous transactions are refused", () => {
    const db = fresh();
    db.exec("CREATE TABLE t (a)");
    expect(() => db.transaction(() => db.transaction(() => 1))).toThrow(DbError);
    expect(() => db.transaction(async () => 1)).toThrow(DbError);
    expect(db.inTransaction).toBe(false);
    db.transaction(() => db.prepare("INSERT INTO t VALUES (1)").run());
    db.close();
  });

  test("SQL errors become DbError with SQLite's result code", () => {
    const db = fresh();
    let err = caught(() => db.exec("INSERT INTO nope VALUES (1)"));
    expect(err).toBeInstanceOf(DbError);
    expect((err as DbError).code).toBe(1);
    db.exec("CREATE TABLE u (a UNIQUE)");
    db.exec("INSERT INTO u VALUES (1)");
    err = caught(() => db.exec("INSERT INTO u VALUES (1)"));
    expect((err as DbError).code).toBe(19); // SQLITE_CONSTRAINT
    db.close();
  });

  test("SQLITE_FULL is DiskFullError; reads go on and writes resume with room", () => {
    const db = fresh();
    db.exec("CREATE TABLE t (b BLOB)");
    db.prepare("INSERT INTO t VALUES (?)").run(new Uint8Array(10));
    const pages = db.prepare("PRAGMA page_count").get()!.page_count as number;
    db.prepare(`PRAGMA max_page_count = ${pages + 2}`).get();
    const insert = db.prepare("INSERT INTO t VALUES (?)");
    expect(() => db.transaction(() => {
      for (let i = 0; i < 50; i++) insert.run(new Uint8Array(4000));
    })).toThrow(DiskFullError);
    expect(db.inTransaction).toBe(false);
    expect(db.prepare("SELECT count(*) AS n FROM t").get()).toEqual({ n: 1 });
    db.prepare("PRAGMA max_page_count = 100000").get();
    db.transaction(() => insert.run(new Uint8Array(4000)));
    expect(db.prepare("SELECT count(*) AS n FROM t").get()).toEqual({ n: 2 });
    db.close();
  });
});

/**
 * The start-up check on real SQLite files: an intact store opens, one with a
 * damaged b-tree page is refused with DbCorruptError (and, through
 * openCheckedStore, with what to do), and checking a file read-only leaves
 * its bytes (and so its checksum) as they were.
 */
import { afterEach, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { sha256File } from "../../src/checkpoint/build.ts";
import { DataDirRefusedError, openCheckedStore } from "../../src/node/datadir.ts";
import { DbCorruptError, openDatabase, openReadOnly } from "../../src/platform/sqlite.ts";
import { quickCheck } from "../../src/storage/integrity.ts";
import { DB_FILE_NAME, RaftStore } from "../../src/storage/store.ts";
import { caught, TempDirs } from "../platform/testutil.ts";

const tmp = new TempDirs();
afterEach(() => tmp.cleanup());

/** A store with a table of a few hundred pages; closed, its WAL merged into the file. */
function storeWithData(): { dir: string; file: string; root: number } {
  const dir = tmp.make();
  RaftStore.open({ dir }).close();
  const file = join(dir, DB_FILE_NAME);
  const db = openDatabase(file);
  db.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB)");
  const ins = db.prepare("INSERT INTO big (v) VALUES (?)");
  db.transaction(() => {
    for (let i = 0; i < 500; i++) ins.run(new Uint8Array(2000).fill(i & 0xff));
  });
  const root = Number(db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'big'").get()!.rootpage);
  db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get(); // the pages into the file itself
  db.close();
  return { dir, file, root };
}

function scribblePage(file: string, page: number): void {
  const fd = openSync(file, "r+");
  writeSync(fd, crypto.getRandomValues(new Uint8Array(4096)), 0, 4096, (page - 1) * 4096);
  closeSync(fd);
}

test("an intact store passes quick_check and opens; a damaged page is refused with DbCorruptError, and openCheckedStore says what to do", () => {
  const { dir, file, root } = storeWithData();
  openCheckedStore({ dir }).close();
  scribblePage(file, root);
  const e = caught(() => RaftStore.open({ dir, verify: true }));
  expect(e).toBeInstanceOf(DbCorruptError);
  expect((e as Error).message).toContain("quick_check");
  const refused = caught(() => openCheckedStore({ dir })) as DataDirRefusedError;
  expect(refused).toBeInstanceOf(DataDirRefusedError);
  expect(refused.problem).toBe("corrupt");
  expect(refused.message).toContain("cairn restore");
  // Without the check the damage goes unnoticed at open: it is what the check is for.
  RaftStore.open({ dir }).close();
});

test("quick_check on a file opened read-only leaves its bytes as they were (a backup keeps its checksum)", () => {
  const { file } = storeWithData();
  const copy = `${file}.copy`;
  const d = openDatabase(copy);
  d.prepare("PRAGMA journal_mode=DELETE").get();
  d.exec(`ATTACH DATABASE '${file}' AS src; CREATE TABLE big AS SELECT * FROM src.big; DETACH DATABASE src`);
  d.close();
  const before = sha256File(copy);
  const ro = openReadOnly(copy);
  expect(quickCheck(ro)).toBeGreaterThanOrEqual(0);
  ro.close();
  expect(sha256File(copy)).toBe(before);
  expect(readFileSync(copy).length).toBeGreaterThan(0);
});

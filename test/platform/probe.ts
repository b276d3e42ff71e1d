/**
 * Runs the SQLite adapter, RaftStore and the cairn state machine end to end
 * and prints one JSON line. test/platform/runtimes.test.ts runs it under Bun,
 * Deno and as a `bun build --compile` binary, and across runtimes on one
 * data directory. Usage: probe.ts <dir> <runtime label>
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DiskFullError, openDatabase } from "../../src/platform/sqlite.ts";
import type { Entry } from "../../src/raft/types.ts";
import { CairnFsm } from "../../src/statemachine/cairn.ts";
import { encodeCommand, type Command } from "../../src/statemachine/commands.ts";
import { Applier } from "../../src/statemachine/fsm.ts";
import { RaftStore } from "../../src/storage/store.ts";

const dir = process.argv[2];
const label = process.argv[3] ?? "?";
if (!dir) throw new Error("usage: probe.ts <dir> <label>");

function blobRoundTrip(): boolean {
  mkdirSync(dir!, { recursive: true });
  const db = openDatabase(join(dir!, `raw-${label}.db`));
  db.exec("CREATE TABLE IF NOT EXISTS t (b BLOB)");
  const all = new Uint8Array(256).map((_, i) => i);
  db.transaction(() => db.prepare("INSERT INTO t VALUES (?)").run(all));
  const back = db.prepare("SELECT b FROM t").get()!.b as Uint8Array;
  db.close();
  return back.constructor === Uint8Array && back.length === 256 && back.every((v, i) => v === i);
}

/** SQLITE_FULL must be DiskFullError whichever driver reports it; writes resume with room. */
function diskFull(): boolean {
  const db = openDatabase(join(dir!, `full-${label}.db`));
  db.exec("CREATE TABLE IF NOT EXISTS t (b BLOB)");
  const pages = db.prepare("PRAGMA page_count").get()!.page_count as number;
  db.prepare(`PRAGMA max_page_count = ${pages + 1}`).get();
  let full = false;
  try {
    db.transaction(() => db.prepare("INSERT INTO t VALUES (?)").run(new Uint8Array(100_000)));
  } catch (err) {
    full = err instanceof DiskFullError;
  }
  db.prepare("PRAGMA max_page_count = 1000000").get();
  db.transaction(() => db.prepare("INSERT INTO t VALUES (?)").run(new Uint8Array(100_000)));
  db.close();
  return full;
}

function writeSome(store: RaftStore, applier: Applier): void {
  const first = store.lastIndex() + 1;
  const term = store.hardState().term + 1;
  const cmds: Command[] = [
    { op: "changes", items: [{ data: { from: label }, tags: ["probe"] }], ts: 1000 * first },
    { op: "put", key: `bin/${label}`, value: new Uint8Array([0, 1, 254, 255]), contentType: "application/octet-stream", ts: 1000 * first },
  ];
  const entries: Entry[] = cmds.map((c, k) => ({ index: first + k, term, kind: "normal", data: encodeCommand(c) }));
  store.persist({ entries, hardState: { term, vote: "n1", commit: first + 1 } });
  applier.apply(entries);
}

function open(): { store: RaftStore; fsm: CairnFsm; applier: Applier } {
  const store = RaftStore.open({ dir: dir! });
  const fsm = new CairnFsm();
  return { store, fsm, applier: new Applier({ store, fsm }) };
}

const blobOk = blobRoundTrip();
const diskFullOk = diskFull();
let s = open();
writeSome(s.store, s.applier);
s.store.close();
s = open(); // everything below is read back from the file
const value = s.fsm.get(`bin/${label}`)?.value;
console.log(JSON.stringify({
  label,
  blobOk,
  diskFullOk,
  lastIndex: s.store.lastIndex(),
  terms: s.store.entries(1, s.store.lastIndex() + 1, Infinity).map((e) => e.term),
  hardState: s.store.hardState(),
  applied: s.applier.appliedIndex(),
  feed: s.fsm.listChanges({ tags: ["probe"] }).changes.map((c) => c.data),
  value: value ? Array.from(value) : null,
  valueIsUint8Array: value?.constructor === Uint8Array,
}));
s.store.close();

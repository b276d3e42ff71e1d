/**
 * Builds a checkpoint file from a live database, without blocking its
 * writer: one read transaction on a separate connection sees one committed
 * state (WAL readers do) while the node goes on writing, and copies it table
 * by table into a new file. The copy keeps the state machine's tables and the
 * applied index and configuration stored with them; the Raft log and the
 * node's identity are left out. Runs in a worker thread (worker.ts).
 *
 * The copy is paced: written in slices, each flushed to disk (fdatasync)
 * before the next, at most `bytesPerSec`. A burst of a hundred megabytes of
 * dirty pages makes every fsync on the same disk wait for it, and the node's
 * commits are fsyncs (measured: bench/checkpoint.ts); `VACUUM INTO` cannot be
 * paced, which is why it is not used.
 */
import { createHash } from "node:crypto";
import { closeSync, fdatasyncSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { openDatabase, type Db } from "../platform/sqlite.ts";
import type { ConfState } from "../raft/index.ts";
import { copyTableInSlices } from "./copy.ts";

export interface BuildRequest {
  /** The node's database file. */
  readonly dbPath: string;
  /** Where to write the copy (a .tmp name: the caller renames it when it is recorded). */
  readonly outPath: string;
  /** Write rate limit of the copy (0: as fast as it goes). */
  readonly bytesPerSec?: number;
}

export interface BuildResult {
  readonly outPath: string;
  readonly index: number;
  readonly conf: ConfState;
  readonly feedLast: number;
  readonly bytes: number;
  readonly sha256: string;
  readonly buildMs: number;
}

const HASH_CHUNK_BYTES = 1 << 20;

export function sha256File(path: string): string {
  const h = createHash("sha256");
  const buf = new Uint8Array(HASH_CHUNK_BYTES);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** Bytes written between two fdatasyncs of the copy. */
const SYNC_EVERY_BYTES = 4 << 20;
/** Pages of the copy kept in SQLite's cache: the rest goes to the file as it is written, to be flushed in slices. */
const COPY_CACHE_KIB = 2048;
/** Tables copied empty: the log is not part of a checkpoint. */
const EMPTY_TABLES = new Set(["raft_log"]);
const CKPT = "ckpt";

interface SchemaRow {
  readonly type: string;
  readonly name: string;
  readonly sql: string;
}

function sleepMs(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Flushes the copy every SYNC_EVERY_BYTES and keeps the write rate under the limit. */
class Pacer {
  private written = 0;
  private sinceSync = 0;
  private readonly t0 = performance.now();
  constructor(
    private readonly fd: number,
    private readonly bytesPerSec: number,
  ) {}

  wrote(bytes: number): void {
    this.written += bytes;
    this.sinceSync += bytes;
    if (this.sinceSync >= SYNC_EVERY_BYTES) {
      fdatasyncSync(this.fd);
      this.sinceSync = 0;
    }
    if (this.bytesPerSec > 0) sleepMs(Math.floor((this.written / this.bytesPerSec) * 1000 - (performance.now() - this.t0)));
  }
}

export function buildCheckpointFile(req: BuildRequest): BuildResult {
  const t0 = performance.now();
  rmSync(req.outPath, { force: true });
  const src = openDatabase(req.dbPath, { synchronous: "NORMAL" });
  let facts: { index: number; conf: ConfState; feedLast: number };
  let later: SchemaRow[];
  try {
    const schema = src.prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'").all() as unknown as SchemaRow[];
    const pageSize = Number(src.prepare("PRAGMA page_size").get()?.page_size ?? 4096);
    const tables = schema.filter((r) => r.type === "table");
    // Indexes, views and triggers come after the data: faster, and no trigger fires on the copy.
    later = schema.filter((r) => r.type !== "table");
    createTables(req.outPath, pageSize, tables);
    facts = copyData(src, req, tables);
  } finally {
    src.close();
  }
  finishCopy(req.outPath, later);
  return {
    outPath: req.outPath,
    ...facts,
    bytes: statSync(req.outPath).size,
    sha256: sha256File(req.outPath),
    buildMs: Math.round(performance.now() - t0),
  };
}

/** The copy's file with the source's tables (no rows yet), in rollback-journal mode. */
function createTables(path: string, pageSize: number, tables: SchemaRow[]): void {
  const db = openDatabase(path, { synchronous: "NORMAL" });
  try {
    db.prepare("PRAGMA journal_mode=DELETE").get();
    db.exec(`PRAGMA page_size=${Math.trunc(pageSize)}`);
    for (const t of tables) db.exec(t.sql);
  } finally {
    db.close();
  }
}

/** Copies every table's rows inside one read transaction of the source (one consistent state). */
function copyData(src: Db, req: BuildRequest, tables: SchemaRow[]): { index: number; conf: ConfState; feedLast: number } {
  src.prepare(`ATTACH DATABASE ? AS ${CKPT}`).run(req.outPath);
  const fd = openSync(req.outPath, "r");
  try {
    // The copy is a scratch file until it is complete: no journal, and flushed by the pacer.
    src.prepare(`PRAGMA ${CKPT}.journal_mode=OFF`).get();
    src.exec(`PRAGMA ${CKPT}.synchronous=OFF; PRAGMA ${CKPT}.cache_size=-${COPY_CACHE_KIB}`);
    src.exec("BEGIN");
    try {
      const st = src.prepare("SELECT applied_index, conf FROM main.raft_state WHERE id = 1").get()!;
      const hasFeed = src.prepare("SELECT 1 AS x FROM main.sqlite_master WHERE type = 'table' AND name = 'feed_state'").get();
      const feedLast = hasFeed ? Number(src.prepare("SELECT last FROM main.feed_state WHERE id = 1").get()?.last ?? 0) : 0;
      const pacer = new Pacer(fd, req.bytesPerSec ?? 0);
      for (const t of tables) if (!EMPTY_TABLES.has(t.name)) copyTable(src, t, pacer);
      if (src.prepare("SELECT 1 AS x FROM main.sqlite_master WHERE name = 'sqlite_sequence'").get()) {
        // The copy's inserts set its counters to the highest id present; the source's may be higher (deleted rows).
        src.exec(`DELETE FROM ${CKPT}.sqlite_sequence; INSERT INTO ${CKPT}.sqlite_sequence SELECT * FROM main.sqlite_sequence`);
      }
      // A checkpoint is the state machine only: no votes, no node identity.
      src.exec(`UPDATE ${CKPT}.raft_state SET term = 0, vote = '', commit_index = applied_index`);
      src.exec(`DELETE FROM ${CKPT}.meta WHERE key = 'node_id'`);
      src.exec("COMMIT");
      return { index: Number(st.applied_index), conf: JSON.parse(String(st.conf)) as ConfState, feedLast };
    } catch (e) {
      src.exec("ROLLBACK");
      throw e;
    }
  } finally {
    closeSync(fd);
    src.exec(`DETACH DATABASE ${CKPT}`);
  }
}

/** Copies one table in slices of rows, in key order, each slice handed to the pacer. */
function copyTable(src: Db, t: SchemaRow, pacer: Pacer): void {
  const pages = () => Number(src.prepare(`PRAGMA ${CKPT}.page_count`).get()?.page_count ?? 0);
  const pageSize = Number(src.prepare(`PRAGMA ${CKPT}.page_size`).get()?.page_size ?? 4096);
  let before = pages();
  copyTableInSlices(src, {
    from: "main",
    to: CKPT,
    name: t.name,
    sql: t.sql,
    onSlice: () => {
      const now = pages();
      const bytes = (now - before) * pageSize;
      before = now;
      pacer.wrote(bytes);
      return bytes;
    },
  });
}

/** Indexes, views and triggers; the file switched to a plain rollback journal and flushed. */
function finishCopy(path: string, later: SchemaRow[]): void {
  const db = openDatabase(path, { synchronous: "FULL" });
  try {
    db.prepare("PRAGMA journal_mode=DELETE").get();
    for (const r of later) db.exec(r.sql);
  } finally {
    db.close();
  }
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  const fd = openSync(path, "r");
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Loading a checkpoint's state-machine tables into a live database, inside
 * the transaction that also resets the Raft log to the checkpoint (so a
 * crash leaves either the old state or the new one). Generic: every table of
 * the checkpoint except the Raft ones is copied, so an embedder's own FSM
 * tables travel too.
 */
import { closeSync, existsSync, fdatasyncSync, fstatSync, openSync } from "node:fs";
import type { Db } from "../platform/sqlite.ts";
import { assert } from "../util/assert.ts";
import { copyTableInSlices, quote } from "./copy.ts";

const RAFT_TABLES = new Set(["meta", "raft_state", "raft_log"]);
export const CKPT_SCHEMA = "ckpt";

function userTables(db: Db, schema: string): { name: string; sql: string }[] {
  return db
    .prepare(`SELECT name, sql FROM ${schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
    .all()
    .map((r) => ({ name: String(r.name), sql: String(r.sql) }))
    .filter((t) => !RAFT_TABLES.has(t.name));
}

/** ATTACH must happen outside a transaction: call before, run `copy` inside, detach after. */
export function attachCheckpoint(db: Db, path: string): void {
  db.prepare(`ATTACH DATABASE ? AS ${CKPT_SCHEMA}`).run(path);
}

export function detachCheckpoint(db: Db): void {
  db.exec(`DETACH DATABASE ${CKPT_SCHEMA}`);
}

/** Replaces every state-machine table of `db` with the attached checkpoint's. Runs inside a transaction. */
export function copyCheckpointTables(db: Db): void {
  assert(db.inTransaction, "copyCheckpointTables must run inside the install transaction");
  const incoming = userTables(db, CKPT_SCHEMA);
  const names = new Set(incoming.map((t) => t.name));
  for (const t of userTables(db, "main")) {
    if (!names.has(t.name)) db.exec(`DELETE FROM main.${quote(t.name)}`);
  }
  const existing = new Set(userTables(db, "main").map((t) => t.name));
  const flusher = new WalFlusher(db.path);
  try {
    for (const t of incoming) {
      if (!existing.has(t.name)) db.exec(t.sql.replace(/^CREATE TABLE/i, "CREATE TABLE IF NOT EXISTS"));
      db.exec(`DELETE FROM main.${quote(t.name)}`);
      copyTableInSlices(db, { from: CKPT_SCHEMA, to: "main", name: t.name, sql: t.sql, onSlice: () => flusher.slice() });
    }
  } finally {
    flusher.close();
  }
}

/** The WAL is flushed every this many bytes of the install. */
const FLUSH_EVERY_BYTES = 4 << 20;

/**
 * Flushes the database's WAL while the install transaction writes it (SQLite
 * spills pages there as the transaction grows): a hundred megabytes flushed
 * at once by the commit would stall every other fsync on the disk.
 */
class WalFlusher {
  private fd: number | null = null;
  private size = 0;
  private unflushed = 0;
  constructor(private readonly dbPath: string) {}

  /** After a slice: the bytes it added to the WAL (null when the WAL is reused in place and that is unknown). */
  slice(): number | null {
    const wal = `${this.dbPath}-wal`;
    if (this.fd === null) {
      if (!existsSync(wal)) return null;
      this.fd = openSync(wal, "r");
      this.size = fstatSync(this.fd).size;
      return null;
    }
    const size = fstatSync(this.fd).size;
    const grew = size - this.size;
    this.size = size;
    this.unflushed += grew > 0 ? grew : 1 << 20;
    if (this.unflushed >= FLUSH_EVERY_BYTES) {
      fdatasyncSync(this.fd);
      this.unflushed = 0;
    }
    return grew > 0 ? grew : null;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

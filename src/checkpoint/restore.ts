/**
 * Loading a checkpoint's state-machine tables into a live database, inside
 * the transaction that also resets the Raft log to the checkpoint (so a
 * crash leaves either the old state or the new one). Generic: every table of
 * the checkpoint except the Raft ones is copied, so an embedder's own FSM
 * tables travel too.
 */
import type { Db } from "../platform/sqlite.ts";
import { assert } from "../util/assert.ts";

const RAFT_TABLES = new Set(["meta", "raft_state", "raft_log"]);
export const CKPT_SCHEMA = "ckpt";

function userTables(db: Db, schema: string): { name: string; sql: string }[] {
  return db
    .prepare(`SELECT name, sql FROM ${schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
    .all()
    .map((r) => ({ name: String(r.name), sql: String(r.sql) }))
    .filter((t) => !RAFT_TABLES.has(t.name));
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

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
  for (const t of incoming) {
    if (!existing.has(t.name)) db.exec(t.sql.replace(/^CREATE TABLE/i, "CREATE TABLE IF NOT EXISTS"));
    db.exec(`DELETE FROM main.${quote(t.name)}`);
    db.exec(`INSERT INTO main.${quote(t.name)} SELECT * FROM ${CKPT_SCHEMA}.${quote(t.name)}`);
  }
}

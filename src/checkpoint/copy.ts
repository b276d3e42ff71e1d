/**
 * Copying a table from one attached schema to another in slices of rows, in
 * key order (rowid, or a WITHOUT ROWID table's primary key), so that the
 * caller can flush (and pace) what each slice wrote. Values never leave
 * SQLite (INSERT ... SELECT), so types and bytes are exact.
 */
import type { Db, Row, SqlValue } from "../platform/sqlite.ts";

/** A slice aims at about this many bytes (the first slice of a table has SLICE_ROWS_FIRST rows). */
const SLICE_BYTES = 1 << 20;
const SLICE_ROWS_FIRST = 64;
const SLICE_ROWS_MAX = 100_000;

export const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** The columns that order a table: its rowid, or a WITHOUT ROWID table's primary key. */
function keyColumns(db: Db, schema: string, name: string, sql: string): string[] {
  if (!/\bWITHOUT\s+ROWID\s*;?\s*$/i.test(sql)) return ["rowid"];
  const cols = db.prepare(`SELECT name FROM pragma_table_info(?, ?) WHERE pk > 0 ORDER BY pk`).all(name, schema);
  return cols.map((c) => quote(String(c.name)));
}

export interface SliceCopy {
  readonly from: string;
  readonly to: string;
  readonly name: string;
  /** The table's CREATE statement (tells WITHOUT ROWID tables apart). */
  readonly sql: string;
  /** Called after each slice; returns the bytes it wrote (sizes the next slice), or null when unknown. */
  readonly onSlice: () => number | null;
}

/** INSERT INTO to.name SELECT * FROM from.name, a slice of rows at a time. */
export function copyTableInSlices(db: Db, c: SliceCopy): void {
  const name = quote(c.name);
  const key = keyColumns(db, c.from, c.name, c.sql);
  const order = key.join(", ");
  const k = `(${order})`;
  const marks = `(${key.map(() => "?").join(", ")})`;
  const boundary = (after: boolean) =>
    db.prepare(`SELECT ${key.map((col, i) => `${col} AS k${i}`).join(", ")} FROM ${c.from}.${name}${after ? ` WHERE ${k} > ${marks}` : ""} ORDER BY ${order} LIMIT 1 OFFSET ?`);
  let after: SqlValue[] | null = null;
  let rows = SLICE_ROWS_FIRST;
  for (;;) {
    const b: Row | undefined = boundary(after !== null).get(...(after ?? []), rows - 1);
    const upTo: SqlValue[] | null = b ? key.map((_, i) => b[`k${i}`] ?? null) : null;
    const where = [after ? `${k} > ${marks}` : "", upTo ? `${k} <= ${marks}` : ""].filter(Boolean).join(" AND ");
    db.prepare(`INSERT INTO ${c.to}.${name} SELECT * FROM ${c.from}.${name}${where ? ` WHERE ${where}` : ""} ORDER BY ${order}`).run(...(after ?? []), ...(upTo ?? []));
    const bytes = c.onSlice();
    if (!upTo) return;
    after = upTo;
    if (bytes !== null) rows = Math.max(1, Math.min(SLICE_ROWS_MAX, Math.round(bytes > 0 ? (rows * SLICE_BYTES) / bytes : rows * 4)));
  }
}

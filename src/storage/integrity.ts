/**
 * The start-up check of a database file: PRAGMA quick_check reads every page
 * of every b-tree and checks its structure (not index-to-table consistency,
 * which integrity_check adds at about twice the cost or more). Measured on a
 * 105 MB database on this project's dev machine (2 cores, shared): with the
 * file in the page cache about 100 ms under Bun and 260 ms under Deno
 * (node:sqlite); cold, after drop_caches, about 2.2 s. It is linear in the
 * file size and runs once per start, which bounds it (SQLite cannot be
 * interrupted from either driver, so there is no deadline inside the call;
 * the node logs how long it took).
 * Stopping at the first errors (quick_check(N)) keeps a badly damaged file
 * from producing an unbounded report.
 */
import { DbCorruptError, type Db } from "../platform/sqlite.ts";

/** How many problems quick_check reports at most (it stops there). */
export const QUICK_CHECK_ERRORS_MAX = 5;

/** Throws DbCorruptError if quick_check finds the file damaged; returns how long it took. */
export function quickCheck(db: Db): number {
  const t0 = performance.now();
  let rows;
  try {
    rows = db.prepare(`PRAGMA quick_check(${QUICK_CHECK_ERRORS_MAX})`).all();
  } catch (e) {
    if (e instanceof DbCorruptError) throw e;
    throw new DbCorruptError(db.path, `quick_check could not run: ${(e as Error).message}`, e);
  }
  const found = rows.map((r) => String(Object.values(r)[0]));
  if (found.length !== 1 || found[0] !== "ok") throw new DbCorruptError(db.path, `quick_check: ${found.join("; ")}`);
  return Math.round(performance.now() - t0);
}

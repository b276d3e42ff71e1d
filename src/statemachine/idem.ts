/**
 * Results of commands that carried an idempotency key. Pruning depends only
 * on command times and application order, never on the wall clock, so every
 * node keeps exactly the same keys.
 */
import type { Db } from "../platform/sqlite.ts";
import { decodeResult, encodeResult } from "./commands.ts";
import * as L from "./limits.ts";

export class IdemTable {
  private readonly s: ReturnType<typeof prepare>;

  constructor(db: Db) {
    this.s = prepare(db);
  }

  /** The first result stored for `key`, or null. */
  lookup(key: string): unknown {
    const r = this.s.get.get(key);
    return r ? decodeResult(r.result as Uint8Array) : null;
  }

  /** Records a result at command time `ts`, then forgets keys past IDEM_TTL_MS or IDEM_COUNT_MAX. */
  store(key: string, result: unknown, ts: number): void {
    this.s.insert.run(key, encodeResult(result), ts);
    this.s.pruneAge.run(ts - L.IDEM_TTL_MS);
    this.s.pruneCount.run(L.IDEM_COUNT_MAX);
  }
}

function prepare(db: Db) {
  return {
    get: db.prepare("SELECT result FROM idem WHERE key = ?"),
    insert: db.prepare("INSERT INTO idem (key, result, ts) VALUES (?, ?, ?)"),
    pruneAge: db.prepare("DELETE FROM idem WHERE ts < ?"),
    // seq grows by one per insert, so this keeps the newest IDEM_COUNT_MAX.
    pruneCount: db.prepare("DELETE FROM idem WHERE seq <= (SELECT MAX(seq) FROM idem) - ?"),
  };
}

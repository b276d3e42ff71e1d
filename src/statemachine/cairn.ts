/**
 * CairnFsm: cairn's own state machine, the change feed and the key-value
 * space, applied inside the Applier's transaction. It also serves the
 * read-only queries of the HTTP API from the same tables.
 */
import type { Db } from "../platform/sqlite.ts";
import { assert } from "../util/assert.ts";
import {
  decodeCommand,
  InvalidCommandError,
  type ChangesResult,
  type Command,
  type CommandResult,
  type Compare,
  type DelCmd,
  type PutCmd,
  type Replayed,
  type TxnCmd,
  type TxnOp,
  type TxnOpResult,
  type TxnResult,
} from "./commands.ts";
import { Feed, type Change, type ChangePage, type ChangeQuery, type FeedState, type TrimOptions, type TrimResult } from "./feed.ts";
import type { Fsm, FsmEntry } from "./fsm.ts";
import { IdemTable } from "./idem.ts";
import { Kv, type KvEntry, type KvListOptions, type KvPage, type WriteAt } from "./kv.ts";
import { CAIRN_TABLES } from "./tables.ts";

export class CairnFsm implements Fsm {
  private parts?: { db: Db; feed: Feed; kv: Kv; idem: IdemTable };

  init(db: Db): void {
    db.exec(CAIRN_TABLES);
    const feed = new Feed(db);
    this.parts = { db, feed, kv: new Kv(db, feed), idem: new IdemTable(db) };
  }

  /**
   * Never throws for a bad command (that becomes an `invalid` result); a
   * throw here means SQLite failed (e.g. a full disk) and the batch is retried.
   */
  /** One apply batch with the feed's state kept in memory (Fsm.batch). */
  batch<T>(fn: () => T): T {
    return this.ready().feed.batch(fn);
  }

  apply(db: Db, entry: FsmEntry): Replayed<CommandResult> {
    const { feed, idem } = this.ready();
    assert(db === this.parts!.db, "CairnFsm applied on another database than the one it was initialised with");
    let cmd: Command;
    try {
      cmd = decodeCommand(entry.data);
    } catch (err) {
      if (err instanceof InvalidCommandError) return { error: "invalid", message: err.message };
      throw err;
    }
    if (cmd.idem !== undefined) {
      const first = idem.lookup(cmd.idem);
      if (first !== null) return { ...(first as CommandResult), replayed: true as const };
    }
    const at = { term: entry.term, ts: feed.advanceTs(cmd.ts) };
    const result = this.execute(cmd, at);
    if (cmd.idem !== undefined) idem.store(cmd.idem, result, at.ts);
    return result;
  }

  // ---- queries (read-only) ----

  getChange(index: number): Change | null {
    return this.ready().feed.get(index);
  }

  listChanges(q: ChangeQuery = {}): ChangePage {
    return this.ready().feed.list(q);
  }

  feedState(): FeedState {
    return this.ready().feed.state();
  }

  /** The oldest retained feed index (last + 1 when the feed is empty). */
  /** The newest change index with ts < `ts` (0 if none): for age-based retention. */
  lastIndexBefore(ts: number): number {
    return this.ready().feed.lastIndexBefore(ts);
  }

  firstRetained(): number {
    return this.ready().feed.state().first;
  }

  get(key: string): KvEntry | null {
    return this.ready().kv.get(key);
  }

  list(opts: KvListOptions = {}): KvPage {
    return this.ready().kv.list(opts);
  }

  /** The stored first result for an idempotency key, or null. */
  lookupIdem(key: string): CommandResult | null {
    return this.ready().idem.lookup(key) as CommandResult | null;
  }

  /** Deletes old changes by policy, in its own transaction unless one is open. */
  trimFeed(opts: TrimOptions): TrimResult {
    const { db, feed } = this.ready();
    return db.inTransaction ? feed.trim(opts) : db.transaction(() => feed.trim(opts));
  }

  // ---- commands ----

  private execute(cmd: Command, at: WriteAt): CommandResult {
    switch (cmd.op) {
      case "changes": {
        const { index, last } = this.ready().feed.append(cmd.items, at.term, at.ts);
        return { index, last, term: at.term, ts: at.ts } satisfies ChangesResult;
      }
      case "put":
        return this.put(cmd, at);
      case "del":
        return this.del(cmd, at);
      case "txn":
        return this.txn(cmd, at);
    }
  }

  private put(cmd: PutCmd, at: WriteAt): CommandResult {
    const { kv } = this.ready();
    const current = kv.version(cmd.key);
    const casFails = cmd.ifMatch !== undefined && cmd.ifMatch !== current;
    if (casFails || (cmd.ifNoneMatch === true && current !== 0)) return { error: "compare_failed", key: cmd.key, version: current };
    const version = kv.put(cmd.key, cmd.value, cmd.contentType, at);
    return { op: "put", key: cmd.key, version, index: version, term: at.term, ts: at.ts };
  }

  private del(cmd: DelCmd, at: WriteAt): CommandResult {
    const { kv } = this.ready();
    const current = kv.version(cmd.key);
    if (cmd.ifMatch !== undefined && cmd.ifMatch !== current) return { error: "compare_failed", key: cmd.key, version: current };
    const version = kv.del(cmd.key, at);
    if (version === null) return { error: "not_found", key: cmd.key };
    return { op: "del", key: cmd.key, version, index: version, term: at.term, ts: at.ts };
  }

  /** etcd-style: all compares hold -> success ops, else failure ops; in order, atomically. */
  private txn(cmd: TxnCmd, at: WriteAt): TxnResult {
    const { feed } = this.ready();
    const succeeded = cmd.compare.every((c) => this.holds(c));
    const before = feed.state().last;
    const results = (succeeded ? cmd.success : cmd.failure).map((op) => this.txnOp(op, at));
    const after = feed.state().last;
    const range = after > before ? { index: before + 1, last: after } : {};
    return { succeeded, results, ...range, term: at.term, ts: at.ts };
  }

  private txnOp(op: TxnOp, at: WriteAt): TxnOpResult {
    const { kv } = this.ready();
    switch (op.op) {
      case "put":
        return { op: "put", key: op.key, version: kv.put(op.key, op.value, op.contentType, at) };
      case "del": {
        const version = kv.del(op.key, at);
        return { op: "del", key: op.key, deleted: version !== null, version: version ?? 0 };
      }
      case "get": {
        const e = kv.get(op.key);
        return { op: "get", key: op.key, value: e?.value ?? null, contentType: e?.contentType ?? null, version: e?.version ?? 0 };
      }
    }
  }

  private holds(c: Compare): boolean {
    const e = this.ready().kv.get(c.key);
    switch (c.target) {
      case "version":
        return compareWith(c.op, (e?.version ?? 0) - (c.value as number));
      case "value":
        return e !== null && compareWith(c.op, compareBytes(e.value, c.value as Uint8Array));
      case "exists":
        return c.op === "=" ? (e !== null) === c.value : (e !== null) !== c.value;
    }
  }

  private ready(): NonNullable<CairnFsm["parts"]> {
    assert(this.parts, "CairnFsm used before init(db)");
    return this.parts;
  }
}

/** Applies a comparison operator to the sign of (actual - expected). */
function compareWith(op: Compare["op"], diff: number): boolean {
  switch (op) {
    case "=":
      return diff === 0;
    case "!=":
      return diff !== 0;
    case "<":
      return diff < 0;
    case ">":
      return diff > 0;
  }
}

/** Byte-wise lexicographic order, like memcmp then length. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.byteLength - b.byteLength;
}

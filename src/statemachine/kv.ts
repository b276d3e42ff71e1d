/**
 * The key-value space. Every write appends a change tagged "kv" to the feed
 * (so the feed is the watch API), and the key's version is that change's
 * index.
 *
 * Feed data of a kv change:
 *   {"op": "put", "key", "version", "contentType", "value": <JSON>}  for JSON content types (application/json, *+json) that parse
 *   {"op": "put", "key", "version", "contentType", "text": "..."}    for text/* that is valid UTF-8
 *   {"op": "put", "key", "version", "contentType", "base64": "..."}  for everything else
 *   {"op": "del", "key", "version"}                                  version = the deleting change's index
 */
import { Buffer } from "node:buffer";
import type { Db, Row, Statement } from "../platform/sqlite.ts";
import { int, str } from "../storage/rows.ts";
import type { JsonValue } from "./commands.ts";
import { clampLimit, type Feed } from "./feed.ts";
import { assert } from "../util/assert.ts";
import * as L from "./limits.ts";

export const KV_TAG = "kv";

export interface KvEntry {
  readonly value: Uint8Array;
  readonly contentType: string;
  readonly version: number;
}

export interface KvItem extends KvEntry {
  readonly key: string;
}

export interface KvListOptions {
  readonly prefix?: string;
  /** Start after this key (the `next` of the previous page). */
  readonly after?: string;
  /** Default LIST_LIMIT_DEFAULT, at most LIST_LIMIT_MAX. */
  readonly limit?: number;
}

export interface KvPage {
  readonly items: KvItem[];
  /** Present when there may be more: pass it as `after`. */
  readonly next?: string;
}

/** Where a write lands: the Raft term and the (monotonic) command time. */
export interface WriteAt {
  readonly term: number;
  readonly ts: number;
}

export class Kv {
  private readonly s: ReturnType<typeof prepare>;

  constructor(private readonly db: Db, private readonly feed: Feed) {
    this.s = prepare(db);
  }

  get(key: string): KvEntry | null {
    const r = this.s.get.get(key);
    return r ? toEntry(r) : null;
  }

  /** The key's version, 0 when absent. */
  version(key: string): number {
    const r = this.s.version.get(key);
    return r ? int(r, "version") : 0;
  }

  /** Writes the key; returns its new version. */
  put(key: string, value: Uint8Array, contentType: string, at: WriteAt): number {
    const data = putChangeData(key, this.feed.state().last + 1, contentType, value);
    const { index } = this.feed.append([{ data, tags: [KV_TAG] }], at.term, at.ts);
    this.s.upsert.run(key, value, contentType, index);
    return index;
  }

  /** Deletes the key; returns the deleting change's index, or null when it was absent. */
  del(key: string, at: WriteAt): number | null {
    if (this.version(key) === 0) return null;
    const version = this.feed.state().last + 1;
    this.feed.append([{ data: { op: "del", key, version }, tags: [KV_TAG] }], at.term, at.ts);
    this.s.delete.run(key);
    return version;
  }

  /** Keys in order, with values, bounded by count and LIST_BYTES_MAX. */
  list(opts: KvListOptions = {}): KvPage {
    const limit = clampLimit(opts.limit);
    const prefix = opts.prefix ?? "";
    const upper = prefixUpperBound(prefix);
    // Both lower bounds go to SQLite: it compares in UTF-8 order, JS strings in UTF-16 order.
    const sql =
      "SELECT key, value, content_type, version FROM kv WHERE key >= ? AND key > ?" +
      (upper === null ? "" : " AND key < ?") + " ORDER BY key LIMIT ?";
    const params = [prefix, opts.after ?? "", ...(upper === null ? [] : [upper]), limit + 1];
    const rows = this.statement(sql).all(...params);
    return page(rows, limit);
  }

  private readonly cache = new Map<string, Statement>();

  private statement(sql: string): Statement {
    let st = this.cache.get(sql);
    if (!st) this.cache.set(sql, (st = this.db.prepare(sql)));
    return st;
  }
}

function page(rows: Row[], limit: number): KvPage {
  const items: KvItem[] = [];
  let bytes = 0;
  for (const r of rows) {
    const item = { key: str(r, "key"), ...toEntry(r) };
    bytes += item.value.byteLength + item.key.length;
    const full = items.length === limit || (items.length > 0 && bytes > L.LIST_BYTES_MAX);
    if (full) return { items, next: items[items.length - 1]!.key };
    items.push(item);
  }
  return { items };
}

/**
 * The smallest string above every string that starts with `prefix`: the
 * prefix with its last code point incremented (UTF-8 order is code point
 * order, which is how SQLite compares TEXT). Null when there is none.
 */
export function prefixUpperBound(prefix: string): string | null {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const cp = cps.pop()!.codePointAt(0)!;
    if (cp < 0x10ffff) {
      const nextCp = cp + 1 === 0xd800 ? 0xe000 : cp + 1; // skip the surrogate range
      return cps.join("") + String.fromCodePoint(nextCp);
    }
  }
  return null;
}

function putChangeData(key: string, version: number, contentType: string, value: Uint8Array): JsonValue {
  return { op: "put", key, version, contentType, ...renderValue(value, contentType) };
}

export type RenderedValue = { value: JsonValue } | { text: string } | { base64: string };

/**
 * How a stored value appears in JSON, in the feed's kv changes and in the
 * API's answers alike: "value" for JSON content types that parse, "text" for
 * text/* that is valid UTF-8, else "base64".
 */
export function renderValue(bytes: Uint8Array, contentType: string): RenderedValue {
  const mime = contentType.split(";")[0]!.trim().toLowerCase();
  if (mime === "application/json" || mime.endsWith("+json")) {
    const json = parseJson(bytes);
    if (json !== undefined) return { value: json };
  }
  if (mime.startsWith("text/")) {
    const text = utf8(bytes);
    if (text !== undefined) return { text };
  }
  return { base64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64") };
}

function utf8(b: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(b);
  } catch {
    return undefined;
  }
}

function parseJson(b: Uint8Array): JsonValue | undefined {
  const text = utf8(b);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return undefined;
  }
}

function toEntry(r: Row): KvEntry {
  const value = r.value;
  assert(value instanceof Uint8Array, () => `kv value is ${typeof value}, not bytes`);
  return { value, contentType: str(r, "content_type"), version: int(r, "version") };
}

function prepare(db: Db) {
  const p = (sql: string): Statement => db.prepare(sql);
  return {
    get: p("SELECT value, content_type, version FROM kv WHERE key = ?"),
    version: p("SELECT version FROM kv WHERE key = ?"),
    upsert: p(
      "INSERT INTO kv (key, value, content_type, version) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, content_type = excluded.content_type, version = excluded.version",
    ),
    delete: p("DELETE FROM kv WHERE key = ?"),
  };
}

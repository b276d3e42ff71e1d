/**
 * The change feed: a dense sequence of changes (1, 2, 3, ...) with tags and
 * timestamps. Its index is cairn's user-visible index, independent of Raft
 * indexes. Writes happen only inside the Applier's transaction (or trim()).
 */
import type { Db, Row, Statement } from "../platform/sqlite.ts";
import { int, str } from "../storage/rows.ts";
import { assert } from "../util/assert.ts";
import type { JsonValue } from "./commands.ts";
import * as L from "./limits.ts";

export interface Change {
  readonly index: number;
  readonly term: number;
  readonly ts: number;
  readonly data: JsonValue;
  readonly tags: readonly string[];
}

export interface ChangeQuery {
  /** Changes after this feed index (default 0: from the start). */
  readonly since?: number;
  /** Changes with ts >= this (ms); combined with `since`, the later start wins. */
  readonly sinceTs?: number;
  /** Default LIST_LIMIT_DEFAULT, at most LIST_LIMIT_MAX. */
  readonly limit?: number;
  /** Only changes carrying at least one of these tags (at most QUERY_TAGS_MAX). */
  readonly tags?: readonly string[];
}

/**
 * first/last: the retained range of the whole feed (first = last + 1 when it
 * is empty). atStart: the answer starts at or before the first retained
 * change (since < first); when since < first - 1, changes after `since` were
 * trimmed away. atEnd: no change after the returned ones matches. next: pass
 * it as `since` to continue (past trailing non-matching changes when atEnd).
 */
export interface ChangePage {
  readonly changes: Change[];
  readonly first: number;
  readonly last: number;
  readonly atStart: boolean;
  readonly atEnd: boolean;
  readonly next: number;
}

export interface FeedState {
  readonly first: number;
  readonly last: number;
  readonly ts: number;
}

export interface TrimOptions {
  /** Keep at most this many of the newest changes. */
  readonly keepEntries?: number;
  /** Drop changes older than this, measured back from the feed clock (not the wall clock). */
  readonly keepAgeMs?: number;
}

export interface TrimResult {
  readonly first: number;
  readonly deleted: number;
  /** The policy wants more deleted than TRIM_BATCH_MAX allowed in one call. */
  readonly more: boolean;
}

export interface NewChange {
  readonly data: JsonValue;
  readonly tags: readonly string[];
}

export class Feed {
  private readonly s: ReturnType<typeof prepare>;

  constructor(db: Db) {
    this.s = prepare(db);
  }

  /** feed_state as of the batch in progress (batch()), kept in step with this object's own writes. */
  private cached: FeedState | undefined;

  state(): FeedState {
    if (this.cached) return this.cached;
    const r = this.s.state.get()!;
    return { first: int(r, "first"), last: int(r, "last"), ts: int(r, "ts") };
  }

  /**
   * Runs fn with feed_state read once and kept in memory (one apply batch, inside its transaction:
   * nothing else writes the feed meanwhile). Saves three reads and most clock writes per change.
   */
  batch<T>(fn: () => T): T {
    assert(this.cached === undefined, "Feed.batch is not nestable");
    this.cached = this.state();
    try {
      return fn();
    } finally {
      this.cached = undefined;
    }
  }

  /** Moves the feed clock to max(ts, clock) and returns it. */
  advanceTs(ts: number): number {
    const st = this.state();
    const now = Math.max(ts, st.ts);
    if (now === st.ts && this.cached) return now; // unchanged: no write
    this.s.setTs.run(now);
    if (this.cached) this.cached = { ...st, ts: now };
    return now;
  }

  /** Appends changes with consecutive indexes; returns [index, last]. */
  append(items: readonly NewChange[], term: number, ts: number): { index: number; last: number } {
    assert(items.length > 0, "append of no changes");
    const st = this.state();
    let idx = st.last;
    for (const it of items) {
      idx++;
      this.s.insert.run(idx, term, ts, JSON.stringify(it.data), JSON.stringify(it.tags));
      for (const t of new Set(it.tags)) this.s.insertTag.run(t, idx);
    }
    // first needs no update: on an empty feed it is already last + 1, the first new index.
    this.s.setLast.run(idx);
    if (this.cached) this.cached = { ...this.cached, last: idx };
    return { index: st.last + 1, last: idx };
  }

  get(index: number): Change | null {
    const r = this.s.get.get(index);
    return r ? toChange(r) : null;
  }

  /**
   * Pages already read at the current feed bounds, by query: when a change wakes a thousand
   * long polls and streams waiting with the same query, one reads the page and the rest share it.
   * Rows are immutable between the bounds (the feed is appended to and trimmed from the front),
   * so a page stays right until first or last moves; then the cache is emptied.
   */
  private readonly pages = new Map<string, ChangePage>();
  private pagesAt = "";
  private pagesBytes = 0;

  list(q: ChangeQuery): ChangePage {
    const { first, last } = this.state();
    const at = `${first}:${last}`;
    if (at !== this.pagesAt) {
      this.pages.clear();
      this.pagesAt = at;
      this.pagesBytes = 0;
    }
    // String(): NaN and undefined must not share a key with a valid value (they fail validation).
    const key = `${String(q.since)}|${String(q.sinceTs)}|${String(q.limit)}|${JSON.stringify(q.tags ?? [])}`;
    const hit = this.pages.get(key);
    if (hit) return hit;
    const { page, bytes } = this.readPage(q, first, last);
    if (this.pages.size < PAGE_CACHE_LENGTH_MAX && this.pagesBytes + bytes <= PAGE_CACHE_BYTES_MAX) {
      this.pages.set(key, page);
      this.pagesBytes += bytes;
    }
    return page;
  }

  private readPage(q: ChangeQuery, first: number, last: number): { page: ChangePage; bytes: number } {
    const limit = clampLimit(q.limit);
    let since = Math.max(0, wholeNumber(q.since ?? 0, "since"));
    if (q.sinceTs !== undefined) since = Math.max(since, this.indexBeforeTs(wholeNumber(q.sinceTs, "sinceTs"), last));
    const tags = q.tags ?? [];
    if (tags.length > L.QUERY_TAGS_MAX) throw new InvalidQueryError(`${tags.length} tags in one query, over ${L.QUERY_TAGS_MAX}`);
    const rows = tags.length > 0 ? this.taggedRows(tags, since, limit + 1) : this.s.after.all(since, limit + 1);
    const { changes, cut, bytes } = takeWithinBytes(rows, limit);
    const atEnd = !cut;
    const next = atEnd ? Math.max(since, last) : changes[changes.length - 1]!.index;
    // Shared by every caller with the same query (the cache above): nobody may change it.
    return { page: Object.freeze({ changes: Object.freeze(changes) as Change[], first, last, atStart: since < first, atEnd, next }), bytes };
  }

  /** Deletes the oldest changes by policy; the same call at the same state deletes the same ones. */
  lastIndexBefore(ts: number): number {
    const r = this.s.lastBeforeTs.get(ts);
    return r ? int(r, "idx") : 0;
  }

  trim(opts: TrimOptions): TrimResult {
    const st = this.state();
    let want = st.first - 1;
    if (opts.keepEntries !== undefined) want = Math.max(want, st.last - Math.max(0, opts.keepEntries));
    if (opts.keepAgeMs !== undefined) {
      const r = this.s.lastBeforeTs.get(st.ts - opts.keepAgeMs);
      if (r) want = Math.max(want, int(r, "idx"));
    }
    const cut = Math.min(want, st.first - 1 + L.TRIM_BATCH_MAX);
    if (cut < st.first) return { first: st.first, deleted: 0, more: false };
    this.s.deleteTagsThrough.run(cut);
    const deleted = this.s.deleteThrough.run(cut).changes;
    this.s.setFirst.run(cut + 1);
    if (this.cached) this.cached = { ...this.cached, first: cut + 1 };
    return { first: cut + 1, deleted, more: want > cut };
  }

  /** The index just before the first change at or after time ts (last when there is none). */
  private indexBeforeTs(ts: number, last: number): number {
    const r = this.s.firstAtTs.get(ts);
    return r ? int(r, "idx") - 1 : last;
  }

  /**
   * Up to n changes after `since` carrying any of `tags`: one bounded index
   * range per tag, merged, so the cost is at most tags * n rows however rare
   * the tags are.
   */
  private taggedRows(tags: readonly string[], since: number, n: number): Row[] {
    const ids = new Set<number>();
    for (const t of new Set(tags)) for (const r of this.s.tagAfter.all(t, since, n)) ids.add(int(r, "idx"));
    const sorted = [...ids].sort((a, b) => a - b).slice(0, n);
    return sorted.map((i) => this.s.get.get(i)!);
  }
}

/** A query the caller should have refused (HTTP 400). */
export class InvalidQueryError extends Error {
  override name = "InvalidQueryError";
  constructor(readonly reason: string) {
    super(`invalid query: ${reason}`);
  }
}

/** A list limit within [1, LIST_LIMIT_MAX], LIST_LIMIT_DEFAULT when absent. */
export function clampLimit(limit: number | undefined): number {
  const n = wholeNumber(limit ?? L.LIST_LIMIT_DEFAULT, "limit");
  return Math.min(Math.max(1, n), L.LIST_LIMIT_MAX);
}

function wholeNumber(v: number, what: string): number {
  if (!Number.isFinite(v)) throw new InvalidQueryError(`${what} is ${v}, not a number`);
  return Math.trunc(v);
}

/** The first `limit` rows, fewer once LIST_BYTES_MAX is passed; cut = more rows were left. */
function takeWithinBytes(rows: Row[], limit: number): { changes: Change[]; cut: boolean; bytes: number } {
  const changes: Change[] = [];
  let bytes = 0;
  for (const r of rows) {
    if (changes.length === limit) return { changes, cut: true, bytes };
    const size = str(r, "data").length; // UTF-16 length: close enough to bytes for a bound
    if (changes.length > 0 && bytes + size > L.LIST_BYTES_MAX) return { changes, cut: true, bytes };
    bytes += size;
    changes.push(toChange(r));
  }
  return { changes, cut: false, bytes };
}

/** The page cache of Feed.list: at most this many pages, and this many bytes of change data. */
const PAGE_CACHE_LENGTH_MAX = 64;
const PAGE_CACHE_BYTES_MAX = 8 * 1024 * 1024;

function toChange(r: Row): Change {
  return {
    index: int(r, "idx"),
    term: int(r, "term"),
    ts: int(r, "ts"),
    data: JSON.parse(str(r, "data")) as JsonValue,
    tags: JSON.parse(str(r, "tags")) as string[],
  };
}

function prepare(db: Db) {
  const p = (sql: string): Statement => db.prepare(sql);
  const cols = "idx, term, ts, data, tags";
  return {
    state: p("SELECT first, last, ts FROM feed_state WHERE id = 1"),
    setTs: p("UPDATE feed_state SET ts = ? WHERE id = 1"),
    setLast: p("UPDATE feed_state SET last = ? WHERE id = 1"),
    setFirst: p("UPDATE feed_state SET first = ? WHERE id = 1"),
    insert: p("INSERT INTO changes (idx, term, ts, data, tags) VALUES (?, ?, ?, ?, ?)"),
    insertTag: p("INSERT INTO change_tags (tag, idx) VALUES (?, ?)"),
    get: p(`SELECT ${cols} FROM changes WHERE idx = ?`),
    after: p(`SELECT ${cols} FROM changes WHERE idx > ? ORDER BY idx LIMIT ?`),
    tagAfter: p("SELECT idx FROM change_tags WHERE tag = ? AND idx > ? ORDER BY idx LIMIT ?"),
    firstAtTs: p("SELECT idx FROM changes WHERE ts >= ? ORDER BY ts, idx LIMIT 1"),
    lastBeforeTs: p("SELECT idx FROM changes WHERE ts < ? ORDER BY ts DESC, idx DESC LIMIT 1"),
    deleteTagsThrough: p("DELETE FROM change_tags WHERE idx <= ?"),
    deleteThrough: p("DELETE FROM changes WHERE idx <= ?"),
  };
}

/**
 * RaftStore: the node's one database file as the Raft core and the node loop
 * see it. It implements the core's LogStorage (reads, synchronous) and offers
 * the driver's writes: persist() (group commit of one Ready), compact(),
 * createSnapshot(), installSnapshot(), the applied state and the node's
 * identity (node ID, cluster ID).
 *
 * Restart is cheap: the hard state, snapshot metadata and compaction point are
 * one row, the first/last index are the rowid bounds of raft_log, and only the
 * terms of the newest entries are loaded into memory. Nothing replays the log.
 *
 * Invariant: the in-memory copies (hard state, bounds, tail windows) equal
 * what is committed in the file. Writes update them inside the transaction,
 * and a failed transaction reloads them from the file.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { quickCheck } from "./integrity.ts";
import { openDatabase, type Db, type Row, type Statement } from "../platform/sqlite.ts";
import {
  CompactedError,
  entryBytes,
  limitSize,
  UnavailableError,
  type ConfChange,
  type ConfState,
  type Entry,
  type EntryKind,
  type HardState,
  type InitialState,
  type LogStorage,
  type SnapshotMeta,
} from "../raft/index.ts";
import { assert } from "../util/assert.ts";
import { IdentityMismatchError } from "./errors.ts";
import { int, str } from "./rows.ts";
import { prepareSchema, type SchemaOptions, type SchemaResult } from "./schema.ts";
import { WalSync, type FsyncFn } from "./walsync.ts";
import { TailWindow } from "./window.ts";

export const DB_FILE_NAME = "cairn.db";
export const TERM_CACHE_LENGTH_MAX = 65_536;
export const ENTRY_CACHE_LENGTH_MAX = 4096;
export const ENTRY_CACHE_BYTES_MAX = 8 * 1024 * 1024;
/** Rows read from raft_log per query when entries() misses the cache. */
const ENTRY_PAGE_LENGTH = 256;
/** The first page of a read, before the entries' sizes are known. */
const ENTRY_PAGE_FIRST_LENGTH = 8;

export interface StoreOptions {
  /** The data directory; created if missing. The file is `<dir>/cairn.db`. */
  readonly dir: string;
  readonly synchronous?: "FULL" | "NORMAL";
  readonly busyTimeoutMs?: number;
  readonly termCacheLengthMax?: number;
  readonly entryCacheLengthMax?: number;
  readonly entryCacheBytesMax?: number;
  readonly schema?: SchemaOptions;
  /** Run PRAGMA quick_check before anything reads the file (DbCorruptError if it fails). */
  readonly verify?: boolean;
  /** Test only: the sync persistAsync uses (node:fs fdatasync by default). */
  readonly walFsync?: FsyncFn;
}

/** What persist() takes: a Ready fits, plus an optional snapshot restore hook. */
export interface PersistInput {
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
  readonly snapshot?: SnapshotMeta;
  readonly clusterId?: string;
  /** With `snapshot`: loads the state machine's data, inside the same transaction. */
  readonly restore?: (db: Db) => void;
}

/** The applied index and configuration, stored with the state machine's changes. */
export interface AppliedState {
  readonly db: Db;
  appliedIndex(): number;
  confState(): ConfState;
  /** Must run inside the transaction that applied the entries up to `index`. */
  saveApplied(index: number, conf?: ConfState): void;
}

export class RaftStore implements LogStorage, AppliedState {
  readonly db: Db;
  readonly path: string;
  readonly schema: SchemaResult;
  private readonly s: Statements;
  private hard!: HardState;
  private snap!: SnapshotMeta;
  /** The compaction point: the entry just before firstIndex(). */
  private start = 0;
  private startTerm = 0;
  private last = 0;
  private readonly terms: TailWindow<number>;
  private readonly ents: TailWindow<Entry>;
  private readonly termsMax: number;
  private readonly synchronous: "FULL" | "NORMAL";
  /** persistAsync's fsyncs of the WAL, off the event loop. */
  private readonly wal: WalSync;

  private constructor(db: Db, opts: StoreOptions) {
    this.db = db;
    this.synchronous = opts.synchronous ?? "FULL";
    this.wal = new WalSync({ walPath: `${db.path}-wal`, fsync: opts.walFsync });
    this.path = db.path;
    this.schema = prepareSchema(db, opts.schema);
    this.s = prepareStatements(db);
    this.termsMax = opts.termCacheLengthMax ?? TERM_CACHE_LENGTH_MAX;
    this.terms = new TailWindow<number>({ lengthMax: this.termsMax, weightMax: Infinity, weigh: () => 1 }, 0);
    this.ents = new TailWindow<Entry>(
      {
        lengthMax: opts.entryCacheLengthMax ?? ENTRY_CACHE_LENGTH_MAX,
        weightMax: opts.entryCacheBytesMax ?? ENTRY_CACHE_BYTES_MAX,
        weigh: entryBytes,
      },
      0,
    );
    this.reload();
    // After a crash of the process (not of the machine) the WAL still holds, in the page cache,
    // transactions whose fsync never ran; SQLite recovers them and the core would take them as
    // durable (acknowledge them, count itself for them). The first fsync makes them so, and every
    // persistAsync completion (an acknowledgement) waits for it, since completions keep call order.
    if (this.synchronous === "FULL") this.wal.sync(() => undefined); // a failure poisons the syncer: the first write fails
  }

  /** Opens (or creates) the store in `opts.dir`; throws FormatVersionError for a newer file. */
  static open(opts: StoreOptions): RaftStore {
    mkdirSync(opts.dir, { recursive: true });
    const db = openDatabase(join(opts.dir, DB_FILE_NAME), opts);
    try {
      if (opts.verify) quickCheck(db);
      return new RaftStore(db, opts);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  close(): void {
    this.wal.close();
    this.db.close();
  }

  // ---- LogStorage ----

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.confState() };
  }

  firstIndex(): number {
    return this.start + 1;
  }

  lastIndex(): number {
    return this.last;
  }

  snapshotMeta(): SnapshotMeta {
    return this.snap;
  }

  term(i: number): number {
    if (i < this.start) throw new CompactedError(i, this.firstIndex());
    if (i > this.last) throw new UnavailableError(i, this.last);
    if (i === this.start) return this.startTerm;
    const cached = this.terms.get(i);
    if (cached !== undefined) return cached;
    const row = this.s.termAt.get(i);
    assert(row, () => `raft_log has no entry ${i} inside [${this.firstIndex()}, ${this.last}]`);
    return int(row, "term");
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.start) throw new CompactedError(lo, this.firstIndex());
    if (hi > this.last + 1) throw new UnavailableError(hi - 1, this.last);
    if (lo >= hi) return [];
    const cached = this.ents.slice(lo, hi);
    return cached ? limitSize(cached, maxBytes) : this.readEntries(lo, hi, maxBytes);
  }

  hardState(): HardState {
    return this.hard;
  }

  // ---- writes ----

  /**
   * Makes one Ready durable in ONE transaction (one fsync): the snapshot (log
   * reset), the entries (truncating any suffix from the first new index on),
   * the hard state and a newly learned cluster ID.
   */
  persist(w: PersistInput): void {
    const tx = () => this.persistTx(w);
    if (this.commitOnly(w)) this.writeWithoutSync(tx);
    else this.write(tx);
  }

  /**
   * persist() without waiting for the disk (the driver's persistAsync): the
   * transaction is committed at once (reads see it), and `done` runs once it
   * is durable, after an fsync of the WAL off the event loop (WalSync), in
   * call order. A full disk throws DiskFullError here, as persist() does. A
   * snapshot is written by persist() (its fsync covers every earlier write).
   */
  persistAsync(w: PersistInput, done: (err?: unknown) => void): void {
    if (this.synchronous === "NORMAL" || w.snapshot) {
      this.persist(w);
      return this.synchronous === "NORMAL" ? done() : this.wal.after(done);
    }
    const empty = w.entries.length === 0 && !w.hardState && w.clusterId === undefined;
    if (empty) return this.wal.after(done);
    const needsSync = !this.commitOnly(w);
    this.writeWithoutSync(() => this.persistTx(w));
    if (needsSync) this.wal.sync(done);
    else this.wal.after(done);
  }

  private persistTx(w: PersistInput): void {
    if (w.snapshot) this.installTx(w.snapshot, w.restore);
    this.appendTx(w.entries);
    if (w.hardState) this.hardStateTx(w.hardState);
    if (w.clusterId !== undefined) this.setMetaOnce("cluster_id", "cluster", w.clusterId);
  }

  /**
   * Only the commit index moved (no entries, same term and vote): Raft needs
   * no fsync for that (etcd's MustSync), since a commit index lost in a crash
   * is learned again from the leader and never goes below what is applied
   * (the apply transactions come later in the same sequential WAL, so none
   * is durable without this one). Saves one fsync per write at low load,
   * where every other Ready only advances the commit index.
   */
  private commitOnly(w: PersistInput): boolean {
    const hs = w.hardState;
    return (
      this.synchronous === "FULL" &&
      hs !== undefined &&
      w.entries.length === 0 &&
      !w.snapshot &&
      w.clusterId === undefined &&
      hs.term === this.hard.term &&
      hs.vote === this.hard.vote
    );
  }

  private writeWithoutSync(fn: () => void): void {
    this.db.exec("PRAGMA synchronous=NORMAL");
    try {
      this.write(fn);
    } finally {
      this.db.exec("PRAGMA synchronous=FULL");
    }
  }

  /**
   * Replaces the log with a snapshot (a follower that fell behind). The state
   * machine is then at meta.index: `restore` loads its data in the same
   * transaction, or the caller has already put it there.
   */
  installSnapshot(meta: SnapshotMeta, restore?: (db: Db) => void): void {
    this.write(() => this.installTx(meta, restore));
  }

  /** Records a snapshot (checkpoint) of the applied state at `index`. */
  createSnapshot(index: number, conf: ConfState): SnapshotMeta {
    assert(index > this.snap.index, () => `snapshot at ${index} not newer than ${this.snap.index}`);
    assert(index <= this.last, () => `snapshot at ${index} beyond last index ${this.last}`);
    const applied = this.appliedIndex();
    assert(index <= applied, () => `snapshot at ${index} beyond applied index ${applied}`);
    const meta: SnapshotMeta = { index, term: this.term(index), conf };
    this.write(() => {
      this.s.setSnap.run(meta.index, meta.term, JSON.stringify(meta.conf));
      this.snap = meta;
    });
    return meta;
  }

  /** Deletes log entries up to and including `index` (at most the snapshot's index). */
  compact(index: number): void {
    if (index <= this.start) return;
    assert(index <= this.snap.index, () => `compact ${index} beyond snapshot ${this.snap.index}: take a snapshot first`);
    assert(index <= this.last, () => `compact ${index} beyond last index ${this.last}`);
    this.write(() => this.compactTx(index));
  }

  /**
   * Log compaction without a checkpoint file: the state database holds the
   * applied state durably, with its applied index and configuration in the
   * same row, so it is the snapshot. One transaction records the snapshot
   * metadata at the applied index (a follower behind the log start is sent a
   * checkpoint file built when it is needed) and deletes the entries through
   * `index` (at most the applied index). Costs what the log holds, not what
   * the state holds. The apply transactions may skip their fsync (they are
   * redone from the log after a crash): this transaction's own fsync (the WAL
   * is sequential) makes them durable before the log entries are gone.
   */
  compactApplied(index: number): void {
    if (index <= this.start) return;
    const applied = this.appliedIndex();
    assert(index <= applied, () => `compact ${index} beyond applied index ${applied}`);
    this.write(() => {
      if (applied > this.snap.index) {
        const meta: SnapshotMeta = { index: applied, term: this.term(applied), conf: this.confState() };
        this.s.setSnap.run(meta.index, meta.term, JSON.stringify(meta.conf));
        this.snap = meta;
      }
      this.compactTx(index);
    });
  }

  private compactTx(index: number): void {
    const term = this.term(index);
    this.s.deleteThrough.run(index);
    this.s.setLogStart.run(index, term);
    this.start = index;
    this.startTerm = term;
    this.terms.dropThrough(index);
    this.ents.dropThrough(index);
  }

  /** Bytes of entry data in the stored log (a scan: call it sparingly). */
  logBytes(): number {
    const row = this.db.prepare("SELECT COALESCE(SUM(length(data)), 0) AS n FROM raft_log").get();
    return Number(row?.n ?? 0);
  }

  // ---- applied state (written by the Applier, in its transaction) ----

  appliedIndex(): number {
    return int(this.s.applied.get()!, "applied_index");
  }

  confState(): ConfState {
    return JSON.parse(str(this.s.applied.get()!, "conf")) as ConfState;
  }

  saveApplied(index: number, conf?: ConfState): void {
    assert(this.db.inTransaction, "saveApplied must run inside the transaction that applies the entries");
    const applied = this.appliedIndex();
    assert(index >= applied, () => `applied index going back from ${applied} to ${index}`);
    if (conf) this.s.setAppliedConf.run(index, JSON.stringify(conf));
    else this.s.setApplied.run(index);
  }

  // ---- identity ----

  nodeId(): string | null {
    return this.getMeta("node_id");
  }

  clusterId(): string | null {
    return this.getMeta("cluster_id");
  }

  formatVersion(): number {
    return this.schema.version;
  }

  /** Records the node ID; refuses to change a different one already stored. */
  setNodeId(id: string): void {
    this.write(() => this.setMetaOnce("node_id", "node", id));
  }

  setClusterId(id: string): void {
    this.write(() => this.setMetaOnce("cluster_id", "cluster", id));
  }

  /** The name of the cluster (the cluster file's "cluster") this data belongs to; null if never recorded. */
  clusterName(): string | null {
    return this.getMeta("cluster_name");
  }

  /** Records the cluster name once (founding or joining); refuses to change a different one. */
  setClusterName(name: string): void {
    this.write(() => this.setMetaOnce("cluster_name", "cluster", name));
  }

  /** The log index of the configuration that removed this node from its cluster, or null. */
  removedAt(): number | null {
    const v = this.getMeta("removed_at");
    return v === null ? null : Number(v);
  }

  /** Marks this data as that of a node removed from its cluster (it must not rejoin with it). */
  setRemovedAt(index: number): void {
    this.write(() => this.s.setMeta.run("removed_at", String(index)));
  }

  /** Forgets the removal (the node was added back and has applied that configuration). */
  clearRemovedAt(): void {
    this.write(() => this.db.prepare("DELETE FROM meta WHERE key = 'removed_at'").run());
  }

  /**
   * `cairn recover` only: gives this data a new cluster ID, so members of the
   * old cluster are refused from now on (fencing).
   */
  replaceClusterId(id: string): void {
    assert(id !== "", "empty cluster id");
    this.write(() => this.s.setMeta.run("cluster_id", id));
  }

  /** Throws IdentityMismatchError when the file belongs to another node or cluster. */
  checkIdentity(expected: { nodeId?: string; clusterId?: string }): void {
    const node = this.nodeId();
    if (expected.nodeId !== undefined && node !== null && node !== expected.nodeId) {
      throw new IdentityMismatchError(this.path, "node", node, expected.nodeId);
    }
    const cluster = this.clusterId();
    if (expected.clusterId !== undefined && cluster !== null && cluster !== expected.clusterId) {
      throw new IdentityMismatchError(this.path, "cluster", cluster, expected.clusterId);
    }
  }

  // ---- internals ----

  /** Runs fn in a transaction; on failure the in-memory state is re-read from the file. */
  private write(fn: () => void): void {
    try {
      this.db.transaction(fn);
    } catch (err) {
      this.reload();
      throw err;
    }
  }

  private appendTx(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.start + 1;
    const lastNew = entries[entries.length - 1]!.index;
    if (lastNew < first) return; // all compacted already
    const fresh = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const from = fresh[0]!.index;
    assert(from <= this.last + 1, () => `gap: appending ${from} after last ${this.last}`);
    if (from <= this.last) this.s.truncateFrom.run(from);
    fresh.forEach((e, k) => {
      assert(e.index === from + k, () => `entries not contiguous: ${e.index} where ${from + k} was expected`);
      assert((e.kind === "conf") === (e.conf !== undefined), () => `entry ${e.index}: kind ${e.kind} with conf ${JSON.stringify(e.conf)}`);
      this.s.insert.run(e.index, e.term, e.kind, e.data, e.conf ? JSON.stringify(e.conf) : null);
    });
    this.last = lastNew;
    this.terms.replaceFrom(from, fresh.map((e) => e.term));
    this.ents.replaceFrom(from, fresh);
  }

  private hardStateTx(hs: HardState): void {
    assert(hs.term >= this.hard.term, () => `term going back from ${this.hard.term} to ${hs.term}`);
    assert(hs.commit <= this.last, () => `commit ${hs.commit} beyond last index ${this.last}`);
    this.s.setHard.run(hs.term, hs.vote, hs.commit);
    this.hard = hs;
  }

  private installTx(meta: SnapshotMeta, restore?: (db: Db) => void): void {
    assert(meta.index >= this.snap.index, () => `snapshot ${meta.index} older than ${this.snap.index}`);
    restore?.(this.db);
    this.s.clearLog.run();
    this.s.setSnap.run(meta.index, meta.term, JSON.stringify(meta.conf));
    this.s.setLogStart.run(meta.index, meta.term);
    this.s.setAppliedConf.run(meta.index, JSON.stringify(meta.conf));
    // A snapshot holds only committed entries.
    const commit = Math.max(this.hard.commit, meta.index);
    this.s.setHard.run(this.hard.term, this.hard.vote, commit);
    this.hard = { ...this.hard, commit };
    this.snap = meta;
    this.start = this.last = meta.index;
    this.startTerm = meta.term;
    this.terms.reset(meta.index);
    this.ents.reset(meta.index);
  }

  private getMeta(key: string): string | null {
    const row = this.s.getMeta.get(key);
    return row ? str(row, "value") : null;
  }

  private setMetaOnce(key: string, what: "node" | "cluster", value: string): void {
    assert(value !== "", () => `empty ${what} id`);
    const stored = this.getMeta(key);
    if (stored !== null && stored !== value) throw new IdentityMismatchError(this.path, what, stored, value);
    this.s.setMeta.run(key, value);
  }

  /** Reads everything kept in memory from the file (open, and after a failed write). */
  private reload(): void {
    const st = this.s.state.get();
    assert(st, "raft_state has no row");
    this.hard = { term: int(st, "term"), vote: str(st, "vote"), commit: int(st, "commit_index") };
    this.snap = { index: int(st, "snap_index"), term: int(st, "snap_term"), conf: JSON.parse(str(st, "snap_conf")) as ConfState };
    this.start = int(st, "log_start_index");
    this.startTerm = int(st, "log_start_term");
    const bounds = this.s.bounds.get()!;
    const lo = bounds.lo === null ? this.start + 1 : int(bounds, "lo");
    assert(lo === this.start + 1, () => `raft_log starts at ${lo}, expected ${this.start + 1}`);
    this.last = bounds.hi === null ? this.start : int(bounds, "hi");
    this.ents.reset(this.last);
    // The newest terms only: bounded work however long the log is.
    const rows = this.s.termsFrom.all(Math.max(this.start, this.last - this.termsMax));
    this.terms.reset(this.last - rows.length);
    this.terms.replaceFrom(this.last - rows.length + 1, rows.map((r) => int(r, "term")));
  }

  private readEntries(lo: number, hi: number, maxBytes: number): Entry[] {
    const out: Entry[] = [];
    let size = 0;
    // Pages sized from the entries seen so far: rows past maxBytes are read and thrown away, and with
    // large entries a fixed page of 256 rows would read many times maxBytes per call.
    let page = ENTRY_PAGE_FIRST_LENGTH;
    while (lo < hi) {
      if (out.length > 0) page = Math.min(ENTRY_PAGE_LENGTH, Math.max(1, Math.ceil((maxBytes - size) / (size / out.length)) + 1));
      const rows = this.s.range.all(lo, hi, page);
      assert(rows.length > 0, () => `raft_log has no entry ${lo} below last ${this.last}`);
      for (const r of rows) {
        const e = rowToEntry(r);
        assert(e.index === lo, () => `raft_log has a hole at ${lo}`);
        size += entryBytes(e);
        if (out.length > 0 && size > maxBytes) return out;
        out.push(e);
        lo++;
      }
    }
    return out;
  }
}

interface Statements {
  state: Statement;
  bounds: Statement;
  termsFrom: Statement;
  termAt: Statement;
  range: Statement;
  insert: Statement;
  truncateFrom: Statement;
  deleteThrough: Statement;
  clearLog: Statement;
  setHard: Statement;
  setSnap: Statement;
  setLogStart: Statement;
  applied: Statement;
  setApplied: Statement;
  setAppliedConf: Statement;
  getMeta: Statement;
  setMeta: Statement;
}

function prepareStatements(db: Db): Statements {
  const p = (sql: string) => db.prepare(sql);
  return {
    state: p("SELECT * FROM raft_state WHERE id = 1"),
    bounds: p("SELECT MIN(idx) AS lo, MAX(idx) AS hi FROM raft_log"),
    termsFrom: p("SELECT idx, term FROM raft_log WHERE idx > ? ORDER BY idx"),
    termAt: p("SELECT term FROM raft_log WHERE idx = ?"),
    range: p("SELECT idx, term, kind, data, conf FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?"),
    insert: p("INSERT INTO raft_log (idx, term, kind, data, conf) VALUES (?, ?, ?, ?, ?)"),
    truncateFrom: p("DELETE FROM raft_log WHERE idx >= ?"),
    deleteThrough: p("DELETE FROM raft_log WHERE idx <= ?"),
    clearLog: p("DELETE FROM raft_log"),
    setHard: p("UPDATE raft_state SET term = ?, vote = ?, commit_index = ? WHERE id = 1"),
    setSnap: p("UPDATE raft_state SET snap_index = ?, snap_term = ?, snap_conf = ? WHERE id = 1"),
    setLogStart: p("UPDATE raft_state SET log_start_index = ?, log_start_term = ? WHERE id = 1"),
    applied: p("SELECT applied_index, conf FROM raft_state WHERE id = 1"),
    setApplied: p("UPDATE raft_state SET applied_index = ? WHERE id = 1"),
    setAppliedConf: p("UPDATE raft_state SET applied_index = ?, conf = ? WHERE id = 1"),
    getMeta: p("SELECT value FROM meta WHERE key = ?"),
    setMeta: p("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
  };
}

function rowToEntry(r: Row): Entry {
  const kind = str(r, "kind");
  assert(kind === "normal" || kind === "conf", () => `raft_log entry ${String(r.idx)} has kind ${kind}`);
  const data = r.data;
  assert(data instanceof Uint8Array, () => `raft_log entry ${String(r.idx)} has no BLOB data`);
  const base: Entry = { index: int(r, "idx"), term: int(r, "term"), kind: kind as EntryKind, data };
  return r.conf === null ? base : { ...base, conf: JSON.parse(str(r, "conf")) as ConfChange };
}

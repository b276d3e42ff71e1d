/**
 * WalSync: makes the database's committed transactions durable with an
 * fdatasync of its WAL file that runs off the event loop (node:fs fdatasync,
 * on the runtime's I/O threads), so the loop goes on parsing requests,
 * sending appends and applying while the disk syncs.
 *
 * Why this is as durable as synchronous=FULL: in WAL mode a transaction is
 * committed by appending its frames (with a commit marker) to the WAL, and
 * recovery keeps the longest prefix of valid frames. A transaction committed
 * with synchronous=NORMAL is in the WAL file (page cache) but not synced;
 * fdatasync(2) of any descriptor of that file flushes all of its data and the
 * metadata needed to read it back, such as its size (the sync is per file,
 * not per descriptor; SQLite itself syncs the WAL with fdatasync on Linux),
 * so every transaction committed before the sync started is durable when it
 * returns. SQLite still syncs the WAL before each checkpoint copies it into
 * the database (NORMAL does that too).
 *
 * Contract: sync(done) is called right after a commit; done runs once every
 * transaction committed before that call is durable. Callbacks run in call
 * order, never synchronously inside sync() while anything is pending (the
 * caller relies on that order). One sync is in flight at a time; the
 * requests that arrive meanwhile share the next one (group commit).
 *
 * A sync that fails poisons the syncer: that request and every later one
 * fail with the same error, since what the kernel dropped cannot be known
 * (PostgreSQL's "fsyncgate"); the node stops. What it reads back at restart
 * may include pages the failed sync never wrote: a node that saw EIO should
 * be rejoined empty or restored (README, "Checkpoints, backups and recovery").
 */
import { closeSync, fdatasync, fsyncSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { assert } from "../util/assert.ts";

export type FsyncFn = (fd: number, done: (err: Error | null) => void) => void;

interface Request {
  readonly done: (err?: unknown) => void;
  /** False: nothing of its own to sync (it only keeps its place in the order). */
  readonly needsSync: boolean;
}

/** An fsync of the WAL failed; the file's durable content is unknown. */
export class WalSyncError extends Error {
  override name = "WalSyncError";
  constructor(readonly path: string, override readonly cause: unknown) {
    super(`fdatasync of ${path} failed (${String(cause)}): what was written since the last good sync may be lost: the node stops; check the disk, then rejoin this node empty or restore it from a checkpoint or backup`);
  }
}

export class WalSync {
  private fd = -1;
  /** Requests covered by the fsync in flight. */
  private inFlight: Request[] | undefined;
  /** Requests that arrived while an fsync was in flight: the next one covers them. */
  private next: Request[] = [];
  private failure: WalSyncError | undefined;

  constructor(private readonly o: { readonly walPath: string; readonly fsync?: FsyncFn }) {}

  /** Requests pending (in flight or waiting for the next fsync). */
  pending(): number {
    return (this.inFlight?.length ?? 0) + this.next.length;
  }

  /** done runs once everything committed so far is durable. */
  sync(done: (err?: unknown) => void): void {
    this.request({ done, needsSync: true });
  }

  /** done runs once every earlier sync() request completed (a commit that needs no fsync of its own). */
  after(done: (err?: unknown) => void): void {
    this.request({ done, needsSync: false });
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private request(r: Request): void {
    if (this.failure) {
      if (this.inFlight === undefined && this.next.length === 0) return r.done(this.failure);
      this.next.push(r);
      return;
    }
    if (this.inFlight === undefined && this.next.length === 0 && !r.needsSync) return r.done();
    this.next.push(r);
    if (this.inFlight === undefined) this.start();
  }

  private start(): void {
    assert(this.inFlight === undefined, "one WAL fsync in flight at a time");
    const batch = this.next;
    this.next = [];
    this.inFlight = batch;
    if (this.failure || !batch.some((r) => r.needsSync)) return queueMicrotask(() => this.finish(batch, this.failure));
    let fd: number;
    try {
      fd = this.open();
    } catch (e) {
      return queueMicrotask(() => this.finish(batch, new WalSyncError(this.o.walPath, e)));
    }
    (this.o.fsync ?? fdatasync)(fd, (err) => this.finish(batch, err ? new WalSyncError(this.o.walPath, err) : undefined));
  }

  private finish(batch: Request[], err: WalSyncError | undefined): void {
    assert(this.inFlight === batch, "a WAL fsync completed that was not in flight");
    this.inFlight = undefined;
    if (err) this.failure = err;
    try {
      for (const r of batch) r.done(err);
    } finally {
      if (this.next.length > 0) this.start();
    }
  }

  /**
   * The WAL's descriptor, opened at the first sync (SQLite has created the file by then: a commit
   * came first). The file lives as long as the database connection (SQLite removes it only when
   * the last connection closes), so one descriptor serves the store's lifetime. Its directory is
   * synced once, as SQLite does for a new WAL under FULL: the file's name must survive a crash.
   */
  private open(): number {
    if (this.fd >= 0) return this.fd;
    const fd = openSync(this.o.walPath, "r");
    const dir = openSync(dirname(this.o.walPath), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    this.fd = fd;
    return fd;
  }
}

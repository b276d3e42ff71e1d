/**
 * The one SQLite adapter: `bun:sqlite` under Bun, `node:sqlite` (DatabaseSync)
 * under Deno, behind a small synchronous interface. Everything above this file
 * sees the same value types, the same errors and the same pragmas whichever
 * runtime runs it.
 *
 * The driver is chosen with a top-level conditional dynamic import: a static
 * `import "bun:sqlite"` does not resolve under Deno, and this form works under
 * `bun run`, `deno run -A` and in a `bun build --compile` binary (checked by
 * test/platform/sqlite.test.ts).
 */

// deno-lint-ignore no-explicit-any
type AnyDriver = any;

// Declared here so that `deno check` (which has no Bun types) accepts the test;
// at run time it is the global, or undefined under Deno.
declare const Bun: unknown;
const IS_BUN = typeof Bun !== "undefined";
const driver: AnyDriver = IS_BUN ? await import("bun:sqlite") : await import("node:sqlite");

/** What SQLite hands back. Integers come back as numbers (never bigint). */
export type SqlValue = null | number | string | Uint8Array;
/** What may be bound: booleans become 0/1, undefined becomes NULL. */
export type SqlParam = SqlValue | boolean | undefined;
export type Row = Record<string, SqlValue>;

export interface RunResult {
  readonly changes: number;
  readonly lastInsertRowid: number;
}

export interface Statement {
  run(...params: SqlParam[]): RunResult;
  /** The first row, or undefined when there is none. */
  get(...params: SqlParam[]): Row | undefined;
  all(...params: SqlParam[]): Row[];
}

export interface Db {
  readonly path: string;
  /** Runs one or more statements without parameters (schema, pragmas). */
  exec(sql: string): void;
  prepare(sql: string): Statement;
  /**
   * Runs fn inside BEGIN IMMEDIATE ... COMMIT, rolling back if it throws.
   * Not nestable: a nested call is a bug and fails an assertion, so that no
   * caller believes its writes are atomic when they are not. fn must be
   * synchronous: a transaction held across an await would let other work
   * interleave with it.
   */
  transaction<T>(fn: () => T): T;
  readonly inTransaction: boolean;
  close(): void;
}

export interface OpenOptions {
  /** FULL (default) syncs the WAL on every commit: an acknowledged write survives power loss. */
  readonly synchronous?: "FULL" | "NORMAL";
  /** How long a statement waits for another connection's lock. */
  readonly busyTimeoutMs?: number;
}

export const BUSY_TIMEOUT_MS_DEFAULT = 5000;

/** SQLite primary result codes we give a meaning to. */
const SQLITE_BUSY = 5;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_CORRUPT = 11;
const SQLITE_NOTADB = 26;

/** A SQLite failure, with SQLite's primary result code (or -1 when unknown). */
export class DbError extends Error {
  override name = "DbError";
  constructor(message: string, readonly code: number, override readonly cause?: unknown) {
    super(message);
  }
}

/**
 * SQLITE_FULL: the disk (or max_page_count) is full. The failed transaction
 * was rolled back; reads go on, and writes succeed again once there is room.
 */
export class DiskFullError extends DbError {
  override name = "DiskFullError";
  constructor(readonly path: string, cause?: unknown) {
    super(`database ${path} is full: the write was not made; free disk space and writes resume by themselves`, SQLITE_FULL, cause);
  }
}

/** SQLITE_BUSY: another connection held a lock past busy_timeout. */
export class DbBusyError extends DbError {
  override name = "DbBusyError";
  constructor(readonly path: string, cause?: unknown) {
    super(`database ${path} is locked by another connection (is another cairn using this data directory?)`, SQLITE_BUSY, cause);
  }
}

/**
 * SQLITE_CORRUPT / SQLITE_NOTADB: the file is damaged. Nothing in it can be
 * trusted any more: the process stops (crash-only), and the data directory is
 * restored from a checkpoint or backup, or rejoined empty.
 */
export class DbCorruptError extends DbError {
  override name = "DbCorruptError";
  constructor(readonly path: string, detail: string, cause?: unknown) {
    super(`database ${path} is damaged (${detail})`, SQLITE_CORRUPT, cause);
  }
}

/**
 * A database error the process cannot go on after (crash-only): any DbError
 * but a full disk (writes stop until space returns) and a lock held past the
 * busy timeout (retried).
 */
export function isFatalDbError(err: unknown): err is DbError {
  return err instanceof DbError && !(err instanceof DiskFullError) && !(err instanceof DbBusyError);
}

/** Opens (creating if needed) a database file with cairn's pragmas. */
export function openDatabase(path: string, opts: OpenOptions = {}): Db {
  const raw = wrapErrors(path, () => (IS_BUN ? new driver.Database(path, { create: true }) : new driver.DatabaseSync(path)));
  const db = new SqliteDb(path, raw);
  try {
    // journal_mode returns a row; "memory" for :memory: databases, which cannot use WAL.
    db.prepare("PRAGMA journal_mode=WAL").get();
    db.exec(`PRAGMA synchronous=${opts.synchronous ?? "FULL"}`);
    db.exec("PRAGMA foreign_keys=ON");
    db.exec(`PRAGMA busy_timeout=${Math.trunc(opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS_DEFAULT)}`);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * Opens an existing database file read-only, with no pragma that writes (not
 * even journal_mode): a checkpoint or backup being checked or restored from
 * must keep its bytes, or its SHA-256 would no longer match.
 */
export function openReadOnly(path: string): Db {
  const raw = wrapErrors(path, () => (IS_BUN ? new driver.Database(path, { readonly: true }) : new driver.DatabaseSync(path, { readOnly: true })));
  return new SqliteDb(path, raw);
}

class SqliteDb implements Db {
  private depth = 0;
  constructor(readonly path: string, private readonly raw: AnyDriver) {}

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  exec(sql: string): void {
    wrapErrors(this.path, () => this.raw.exec(sql));
  }

  prepare(sql: string): Statement {
    const stmt = wrapErrors(this.path, () => this.raw.prepare(sql));
    return new SqliteStatement(this.path, stmt);
  }

  transaction<T>(fn: () => T): T {
    if (this.depth > 0) throw new DbError(`nested transaction on ${this.path}: transactions are not nestable`, -1);
    this.exec("BEGIN IMMEDIATE");
    this.depth++;
    try {
      const out = fn();
      if (out instanceof Promise) throw new DbError("a transaction function must be synchronous", -1);
      this.exec("COMMIT");
      return out;
    } catch (err) {
      this.rollbackQuietly();
      throw err;
    } finally {
      this.depth--;
    }
  }

  close(): void {
    this.raw.close();
  }

  /**
   * SQLite rolls back by itself after some errors (SQLITE_FULL among them),
   * and then ROLLBACK fails with "no transaction is active": that is fine.
   */
  private rollbackQuietly(): void {
    try {
      this.raw.exec("ROLLBACK");
    } catch {
      // already rolled back by SQLite
    }
  }
}

class SqliteStatement implements Statement {
  constructor(private readonly path: string, private readonly stmt: AnyDriver) {}

  run(...params: SqlParam[]): RunResult {
    const r = wrapErrors(this.path, () => this.stmt.run(...bindAll(params)));
    return { changes: Number(r.changes), lastInsertRowid: Number(r.lastInsertRowid) };
  }

  get(...params: SqlParam[]): Row | undefined {
    const r = wrapErrors(this.path, () => this.stmt.get(...bindAll(params)));
    return r == null ? undefined : normalizeRow(r);
  }

  all(...params: SqlParam[]): Row[] {
    const rows: unknown[] = wrapErrors(this.path, () => this.stmt.all(...bindAll(params)));
    return rows.map(normalizeRow);
  }
}

function bindAll(params: SqlParam[]): unknown[] {
  return params.map(bind);
}

function bind(v: SqlParam): unknown {
  if (v === undefined) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  // node:sqlite binds every JS number as REAL; a bigint makes it INTEGER, so
  // that both runtimes write the same bytes into untyped columns.
  if (!IS_BUN && typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  return v;
}

function normalizeRow(r: unknown): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r as Record<string, unknown>)) out[k] = normalizeValue(v);
  return out;
}

function normalizeValue(v: unknown): SqlValue {
  if (typeof v === "bigint") return Number(v);
  // A Buffer (a Uint8Array subclass) would compare unequal to a plain one.
  if (v instanceof Uint8Array && v.constructor !== Uint8Array) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return v as SqlValue;
}

/** Runs a driver call and turns its errors into DbError and subclasses. */
function wrapErrors<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw classify(path, err);
  }
}

function classify(path: string, err: unknown): unknown {
  if (err instanceof DbError || !(err instanceof Error)) return err;
  const code = resultCode(err);
  if (code === SQLITE_FULL) return new DiskFullError(path, err);
  if (code === SQLITE_BUSY) return new DbBusyError(path, err);
  if (code === SQLITE_CORRUPT || code === SQLITE_NOTADB) return new DbCorruptError(path, err.message, err);
  if (code === SQLITE_CANTOPEN) {
    return new DbError(`cannot open database ${path} (${err.message}): check that its directory exists and is writable`, code, err);
  }
  return new DbError(`${err.message} (database ${path})`, code, err);
}

/** The primary result code: bun:sqlite sets errno, node:sqlite errcode (extended codes carry it in the low byte). */
function resultCode(err: Error): number {
  const e = err as { errno?: unknown; errcode?: unknown };
  const n = typeof e.errno === "number" ? e.errno : typeof e.errcode === "number" ? e.errcode : undefined;
  if (n !== undefined) return n & 0xff;
  // Some node:sqlite errors (Deno's) carry no code; these messages are SQLite's own
  // sqlite3_errstr(SQLITE_FULL / SQLITE_BUSY), the only way left to recognise them.
  if (err.message.includes("database or disk is full")) return SQLITE_FULL;
  if (err.message.includes("database is locked")) return SQLITE_BUSY;
  if (err.message.includes("database disk image is malformed")) return SQLITE_CORRUPT;
  if (err.message.includes("file is not a database")) return SQLITE_NOTADB;
  return -1;
}

/** Another process (or connection) holds the exclusive lock of a lock file. */
export class LockHeldError extends DbError {
  override name = "LockHeldError";
  constructor(readonly path: string, cause?: unknown) {
    super(`${path} is locked by another process`, SQLITE_BUSY, cause);
  }
}

/**
 * An exclusive lock held on a file until release() or the process's death.
 * Keep it referenced: a connection the garbage collector finalizes is closed,
 * and its lock goes with it.
 */
export interface FileLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes an exclusive lock on `path` (a small SQLite file, created if needed),
 * or throws LockHeldError at once if another process holds it.
 *
 * Why SQLite's own locking rather than a PID file: node:fs has no flock, and a
 * PID file with O_EXCL survives kill -9 (a stale file then blocks the restart
 * or needs a liveness check that PID reuse defeats). In locking_mode=EXCLUSIVE
 * a connection that has begun an EXCLUSIVE transaction keeps its POSIX lock
 * (fcntl) after COMMIT, until the connection closes; the kernel drops POSIX
 * locks when the process dies, however it dies. No journal (journal_mode=OFF)
 * so that nothing but the lock file itself is ever left behind. Both drivers
 * (bun:sqlite, node:sqlite) are SQLite with the unix VFS, so both behave alike,
 * also between a Bun and a Deno process.
 */
export function lockFile(path: string): FileLock {
  const raw = wrapErrors(path, () => (IS_BUN ? new driver.Database(path, { create: true }) : new driver.DatabaseSync(path)));
  try {
    raw.exec("PRAGMA busy_timeout=0");
    raw.exec("PRAGMA locking_mode=EXCLUSIVE");
    raw.exec("BEGIN EXCLUSIVE");
    raw.exec("CREATE TABLE IF NOT EXISTS held (id INTEGER PRIMARY KEY)");
    raw.exec("COMMIT");
  } catch (err) {
    try {
      raw.close();
    } catch {
      // closing a connection that never got the lock cannot fail in a way that matters
    }
    const e = classify(path, err);
    if (e instanceof DbBusyError) throw new LockHeldError(path, err);
    throw e;
  }
  let held = true;
  return {
    path,
    release: () => {
      if (!held) return;
      held = false;
      raw.close();
    },
  };
}

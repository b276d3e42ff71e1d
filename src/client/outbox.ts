/**
 * The outbox: a durable local queue of writes in a SQLite file. post(), put()
 * and del() return once the write is committed to the local file
 * (synchronous=FULL: it survives a crash of the application or a power
 * loss), whether or not the cluster is reachable or has a quorum. A loop
 * delivers the writes in the order they were made, as soon as the cluster
 * takes them, and records for each the feed index it got.
 *
 * Exactly once: consecutive changes are grouped into batches (one atomic
 * POST /changes each), and a batch is frozen in the file (its rows and its
 * Idempotency-Key, "<outbox id>:<first seq>-<last seq>") before its first
 * attempt. After a lost answer, a leader change or a crash of the
 * application, the same batch goes again with the same key, and the server
 * answers with the first result instead of applying it twice. The server
 * keeps keys for 24 h and the newest 100,000 keys (IDEM_TTL_MS,
 * IDEM_COUNT_MAX): a batch whose first attempt may have committed and that
 * is retried only after that (an outbox offline for a day, or 100,000 other
 * keyed writes in between) could be applied twice.
 *
 * A write the cluster refuses for good (400, 404, 409/412 on a precondition)
 * is marked failed with the error and reported; the ones after it go on.
 * One process at a time may own an outbox file (a lock beside it).
 */
import type { CairnClient } from "./client.ts";
import { CairnError, RateLimitedError, ServerError, UnauthorizedError, UnavailableError } from "./errors.ts";
import { sleep } from "./transport.ts";
import type { ChangeInput } from "./types.ts";
import type { Db, FileLock, Statement } from "../platform/sqlite.ts";

export interface OutboxOptions {
  /** The SQLite file of the queue (created if needed); a lock file PATH.lock beside it. */
  readonly path: string;
  /** Changes per batch (default 500, server cap 1000). */
  readonly batchItemsMax?: number;
  /** Bytes of change data per batch (default 1 MiB; the server takes 4 MiB bodies). */
  readonly batchBytesMax?: number;
  /** Writes waiting at most (default 1,000,000): post() throws OutboxFullError beyond. */
  readonly pendingMax?: number;
  /** Delivered and failed writes kept for entry()/entries() (default 100,000; older ones are deleted). */
  readonly keepSettledMax?: number;
  /** Deadline of one delivery attempt (default 10 s). */
  readonly attemptTimeoutMs?: number;
  /** Told of each delivered write, in order. */
  readonly onDelivered?: (d: Delivered) => void;
  /** Told of a write the cluster refused for good. */
  readonly onFailed?: (f: Failed) => void;
  /** Told of each failed delivery attempt that will be retried (no quorum, unreachable, ...). */
  readonly onRetry?: (e: Error) => void;
  /** Start delivering at once (default true); else call start(). */
  readonly start?: boolean;
}

export interface Delivered {
  readonly seq: number;
  /** Feed index (changes) or kv version's log index (put/del). */
  readonly index: number;
  readonly idempotencyKey: string;
  /** The server had applied this write already (an earlier attempt's answer was lost): it answered with that result. */
  readonly replayed: boolean;
}

export interface Failed {
  readonly seq: number;
  readonly error: string;
  readonly status: number;
}

export interface OutboxEntry {
  readonly seq: number;
  readonly state: "pending" | "delivered" | "failed";
  readonly index: number | null;
  readonly error: string | null;
  readonly postedMs: number;
  readonly deliveredMs: number | null;
}

export interface OutboxStatus {
  readonly pending: number;
  readonly delivered: number;
  readonly failed: number;
  /** The highest seq handed out so far (0: none). */
  readonly lastSeq: number;
  /** The feed index of the newest delivered write (0: none). */
  readonly lastIndex: number;
}

export class OutboxFullError extends Error {
  override name = "OutboxFullError";
}

const PRUNE_EVERY = 20;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS writes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  payload TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  batch INTEGER,
  state TEXT NOT NULL DEFAULT 'pending',
  idx INTEGER,
  error TEXT,
  posted_ms INTEGER NOT NULL,
  delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS writes_pending ON writes (state, seq);
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0);
`;

type Kind = "change" | "put" | "del";
interface PutPayload { key: string; value: string; base64: boolean; contentType?: string; ifMatch?: number; ifNoneMatch?: boolean }
interface Batch { id: number; key: string; rows: { seq: number; kind: Kind; payload: string }[] }

export class Outbox {
  private readonly s: Record<string, Statement>;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private readonly waiters = new Set<() => void>();
  private pendingCount: number;

  private constructor(
    private readonly client: CairnClient,
    private readonly db: Db,
    private readonly lock: FileLock,
    readonly id: string,
    private readonly o: Required<Omit<OutboxOptions, "onDelivered" | "onFailed" | "onRetry">> & OutboxOptions,
  ) {
    this.s = prepare(db);
    this.pendingCount = (this.s.countPending!.get() as { n: number }).n;
  }

  static async open(client: CairnClient, opts: OutboxOptions): Promise<Outbox> {
    const { openDatabase, lockFile } = await import("../platform/sqlite.ts");
    const lock = lockFile(`${opts.path}.lock`);
    let db: Db | undefined;
    try {
      db = openDatabase(opts.path, { synchronous: "FULL" });
      db.exec(SCHEMA);
      let id = db.prepare("SELECT v FROM meta WHERE k = 'id'").get()?.v as string | undefined;
      if (id === undefined) {
        id = `outbox-${crypto.randomUUID()}`;
        db.prepare("INSERT INTO meta (k, v) VALUES ('id', ?)").run(id);
      }
      const o = { batchItemsMax: 500, batchBytesMax: 1 << 20, pendingMax: 1_000_000, keepSettledMax: 100_000, attemptTimeoutMs: 10_000, start: true, ...opts };
      const box = new Outbox(client, db, lock, id, o);
      if (o.start) box.start();
      return box;
    } catch (e) {
      db?.close();
      lock.release();
      throw e;
    }
  }

  /** Queues a change; resolves with its seq once it is committed to the local file. */
  post(data: ChangeInput["data"], opts: { tags?: string[] } = {}): Promise<{ seq: number }> {
    return this.add("change", JSON.stringify({ data, ...(opts.tags ? { tags: opts.tags } : {}) }));
  }

  /** Queues a kv put (JSON-encoded unless bytes or a text content type). */
  put(key: string, value: unknown, opts: { contentType?: string; ifMatch?: number; ifNoneMatch?: "*" } = {}): Promise<{ seq: number }> {
    const bytes = value instanceof Uint8Array;
    const text = bytes ? Buffer64.encode(value) : typeof value === "string" && opts.contentType?.startsWith("text/") ? value : JSON.stringify(value);
    const contentType = opts.contentType ?? (bytes ? "application/octet-stream" : "application/json");
    const p: PutPayload = { key, value: text, base64: bytes, contentType, ...(opts.ifMatch === undefined ? {} : { ifMatch: opts.ifMatch }), ...(opts.ifNoneMatch ? { ifNoneMatch: true } : {}) };
    return this.add("put", JSON.stringify(p));
  }

  del(key: string, opts: { ifMatch?: number } = {}): Promise<{ seq: number }> {
    return this.add("del", JSON.stringify({ key, ...opts }));
  }

  private add(kind: Kind, payload: string): Promise<{ seq: number }> {
    try {
      if (this.stopping) throw new Error(`the outbox ${this.db.path} is closed: open it again`);
      if (this.pendingCount >= this.o.pendingMax) throw new OutboxFullError(`the outbox ${this.db.path} holds ${this.pendingCount} undelivered writes, its limit (pendingMax): wait for the cluster, or raise it`);
      const r = this.s.insert!.run(kind, payload, payload.length, Date.now());
      this.pendingCount++;
      this.wake?.();
      return Promise.resolve({ seq: r.lastInsertRowid });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  status(): OutboxStatus {
    const rows = this.s.counts!.all() as { state: string; n: number }[];
    const n = (st: string) => rows.find((r) => r.state === st)?.n ?? 0;
    const last = this.s.last!.get() as { seq: number | null; idx: number | null };
    return { pending: n("pending"), delivered: n("delivered"), failed: n("failed"), lastSeq: last.seq ?? 0, lastIndex: last.idx ?? 0 };
  }

  entry(seq: number): OutboxEntry | null {
    const r = this.s.entry!.get(seq);
    if (!r) return null;
    return { seq, state: r.state as OutboxEntry["state"], index: r.idx as number | null, error: r.error as string | null, postedMs: r.posted_ms as number, deliveredMs: r.delivered_ms as number | null };
  }

  /** Entries after `afterSeq`, in order (at most `limit`, default 1000). */
  entries(afterSeq = 0, limit = 1000): OutboxEntry[] {
    return this.s.entries!.all(afterSeq, Math.min(limit, 10_000)).map((r) => this.entry(r.seq as number)!);
  }

  /** Resolves when nothing is pending (or rejects after timeoutMs). */
  async flush(opts: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    while (this.pendingCount > 0) {
      if (Date.now() > deadline) throw new Error(`the outbox still holds ${this.pendingCount} undelivered writes after ${opts.timeoutMs ?? 60_000} ms`);
      await new Promise<void>((res) => {
        const done = () => {
          clearTimeout(t);
          this.waiters.delete(done);
          res();
        };
        const t = setTimeout(done, 100);
        this.waiters.add(done);
      });
    }
  }

  start(): void {
    if (this.running || this.stopping) return;
    this.running = this.loop().catch((e) => {
      this.o.onRetry?.(e as Error);
    });
  }

  /** Stops delivering (an attempt under way is abandoned; it is resent with its key next time) and closes the file. */
  async close(): Promise<void> {
    this.stopping = true;
    this.abort.abort(new Error("the outbox is closing"));
    this.wake?.();
    await this.running;
    this.db.close();
    this.lock.release();
  }

  private readonly abort = new AbortController();

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      const batch = this.db.transaction(() => this.currentBatch());
      if (batch === null) {
        await new Promise<void>((res) => (this.wake = res));
        this.wake = null;
        continue;
      }
      try {
        await this.deliver(batch);
        failures = 0;
      } catch (e) {
        if (this.stopping) return;
        if (!retryable(e)) {
          this.markFailed(batch, e as CairnError);
          continue;
        }
        this.o.onRetry?.(e as Error);
        failures++;
        await sleep(Math.min(5000, 50 * 2 ** Math.min(failures, 7)), this.abort.signal).catch(() => undefined);
      }
    }
  }

  /** The frozen batch not yet delivered, or a new one frozen from the oldest pending writes. */
  private currentBatch(): Batch | null {
    let b = this.s.openBatch!.get() as { id: number; key: string; first_seq: number; last_seq: number } | undefined;
    if (!b) {
      const rows = this.s.unbatched!.all(this.o.batchItemsMax) as { seq: number; kind: Kind; bytes: number }[];
      if (rows.length === 0) return null;
      let n = 1;
      let bytes = rows[0]!.bytes;
      // A kv write goes alone; changes are grouped up to the item and byte limits.
      if (rows[0]!.kind === "change") {
        while (n < rows.length && rows[n]!.kind === "change" && bytes + rows[n]!.bytes <= this.o.batchBytesMax) bytes += rows[n++]!.bytes;
      }
      const first = rows[0]!.seq;
      const last = rows[n - 1]!.seq;
      const key = `${this.id}:${first}-${last}`;
      const id = this.s.newBatch!.run(key, first, last).lastInsertRowid;
      this.s.assign!.run(id, first, last);
      b = { id, key, first_seq: first, last_seq: last };
    }
    const rows = this.s.batchRows!.all(b.id) as { seq: number; kind: Kind; payload: string }[];
    return { id: b.id, key: b.key, rows };
  }

  private async deliver(b: Batch): Promise<void> {
    const opts = { idempotencyKey: b.key, timeoutMs: this.o.attemptTimeoutMs, signal: this.abort.signal };
    const head = b.rows[0]!;
    let res: { index: number; replayed?: boolean };
    if (head.kind === "change") {
      res = await this.client.postBatch(b.rows.map((r) => JSON.parse(r.payload) as ChangeInput), opts);
    } else if (head.kind === "put") {
      const p = JSON.parse(head.payload) as PutPayload;
      const value = p.base64 ? Buffer64.decode(p.value) : p.value;
      const put = { ...opts, ...(p.contentType ? { contentType: p.contentType } : {}), ...(p.ifMatch !== undefined ? { ifMatch: p.ifMatch } : {}), ...(p.ifNoneMatch ? { ifNoneMatch: "*" as const } : {}) };
      res = await this.client.put(p.key, p.contentType === "application/json" && !p.base64 ? JSON.parse(p.value) : value, put);
    } else {
      const p = JSON.parse(head.payload) as { key: string; ifMatch?: number };
      res = await this.client.del(p.key, { ...opts, ...(p.ifMatch !== undefined ? { ifMatch: p.ifMatch } : {}) });
    }
    const index = res.index;
    const replayed = res.replayed === true;
    const now = Date.now();
    this.db.transaction(() => {
      b.rows.forEach((r, i) => this.s.delivered!.run(index + i, now, r.seq));
      this.s.doneBatch!.run(b.id);
    });
    this.settled(b.rows.length);
    for (const [i, r] of b.rows.entries()) this.o.onDelivered?.({ seq: r.seq, index: index + i, idempotencyKey: b.key, replayed });
  }

  private markFailed(b: Batch, e: CairnError): void {
    const msg = e instanceof Error ? e.message : String(e);
    this.db.transaction(() => {
      for (const r of b.rows) this.s.failed!.run(msg, Date.now(), r.seq);
      this.s.doneBatch!.run(b.id);
    });
    this.settled(b.rows.length);
    for (const r of b.rows) this.o.onFailed?.({ seq: r.seq, error: msg, status: e instanceof CairnError ? e.status : 0 });
  }

  private settledBatches = 0;

  private settled(n: number): void {
    this.pendingCount -= n;
    // Every PRUNE_EVERY batches: the file stays bounded by keepSettledMax settled writes.
    if (++this.settledBatches % PRUNE_EVERY === 0) {
      this.db.transaction(() => {
        this.s.prune!.run(this.o.keepSettledMax);
        this.s.pruneBatches!.run();
      });
    }
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w();
    }
  }
}

/**
 * Worth another attempt: nothing answered, no quorum, a refused token (it
 * may be fixed), a rate limit, a 500 (skipping a write would break the
 * order for what may be a passing fault).
 */
function retryable(e: unknown): boolean {
  return e instanceof UnavailableError || e instanceof UnauthorizedError || e instanceof RateLimitedError || e instanceof ServerError || !(e instanceof CairnError);
}

function prepare(db: Db): Record<string, Statement> {
  return {
    insert: db.prepare("INSERT INTO writes (kind, payload, bytes, posted_ms) VALUES (?, ?, ?, ?)"),
    countPending: db.prepare("SELECT count(*) AS n FROM writes WHERE state = 'pending'"),
    counts: db.prepare("SELECT state, count(*) AS n FROM writes GROUP BY state"),
    last: db.prepare("SELECT (SELECT max(seq) FROM writes) AS seq, (SELECT idx FROM writes WHERE state = 'delivered' ORDER BY seq DESC LIMIT 1) AS idx"),
    entry: db.prepare("SELECT state, idx, error, posted_ms, delivered_ms FROM writes WHERE seq = ?"),
    entries: db.prepare("SELECT seq FROM writes WHERE seq > ? ORDER BY seq LIMIT ?"),
    openBatch: db.prepare("SELECT id, key, first_seq, last_seq FROM batches WHERE done = 0 ORDER BY id LIMIT 1"),
    unbatched: db.prepare("SELECT seq, kind, bytes FROM writes WHERE state = 'pending' AND batch IS NULL ORDER BY seq LIMIT ?"),
    newBatch: db.prepare("INSERT INTO batches (key, first_seq, last_seq) VALUES (?, ?, ?)"),
    assign: db.prepare("UPDATE writes SET batch = ? WHERE seq BETWEEN ? AND ? AND state = 'pending'"),
    batchRows: db.prepare("SELECT seq, kind, payload FROM writes WHERE batch = ? ORDER BY seq"),
    delivered: db.prepare("UPDATE writes SET state = 'delivered', idx = ?, delivered_ms = ? WHERE seq = ?"),
    failed: db.prepare("UPDATE writes SET state = 'failed', error = ?, delivered_ms = ? WHERE seq = ?"),
    doneBatch: db.prepare("UPDATE batches SET done = 1 WHERE id = ?"),
    prune: db.prepare("DELETE FROM writes WHERE state != 'pending' AND seq <= (SELECT seq FROM writes WHERE state != 'pending' ORDER BY seq DESC LIMIT 1 OFFSET ?)"),
    pruneBatches: db.prepare("DELETE FROM batches WHERE done = 1 AND id NOT IN (SELECT DISTINCT batch FROM writes WHERE batch IS NOT NULL)"),
  };
}

/** base64 without node:buffer (the same in every runtime). */
const Buffer64 = {
  encode(b: Uint8Array): string {
    let s = "";
    for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
    return btoa(s);
  },
  decode(s: string): Uint8Array {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  },
};

/**
 * CairnClient: the HTTP API as typed calls. Every write carries an
 * Idempotency-Key (generated unless given), so the transport may resend it
 * after a lost answer or a leader change without applying it twice.
 */
import { NotFoundError } from "./errors.ts";
import { follow, type FollowOptions } from "./follow.ts";
import type { Outbox, OutboxOptions } from "./outbox.ts";
import { Transport, type Answer, type CallOptions, type ClientOptions } from "./transport.ts";
import type {
  Change,
  ChangeInput,
  ChangePage,
  CheckpointInfo,
  Consistency,
  KvListPage,
  KvValue,
  KvWriteResult,
  NodeStatus,
  PostResult,
  TxnRequest,
  TxnResult,
} from "./types.ts";

export interface WriteOptions extends CallOptions {
  /** Your own Idempotency-Key (at most 256 bytes); default a random one per call. */
  readonly idempotencyKey?: string;
}

export interface KvPutOptions extends WriteOptions {
  /** Default application/json for non-byte values, application/octet-stream for bytes. */
  readonly contentType?: string;
  /** Only if the key is at this version (0: absent), or "*": only if it exists. ConflictError otherwise. */
  readonly ifMatch?: number | "*";
  /** Only if the key does not exist (create). ConflictError otherwise. */
  readonly ifNoneMatch?: "*";
}

export interface ReadOptions extends CallOptions {
  readonly consistency?: Consistency;
}

export interface ListChangesOptions extends ReadOptions {
  readonly since?: number;
  readonly sinceTs?: number | string;
  readonly limit?: number;
  readonly tags?: readonly string[];
  /** Long poll: wait up to this many seconds for a first change (server cap 60). */
  readonly blockSec?: number;
}

const enc = new TextEncoder();

export function newIdempotencyKey(): string {
  return `cairn-client-${crypto.randomUUID()}`;
}

export class CairnClient {
  readonly transport: Transport;

  constructor(opts: ClientOptions) {
    this.transport = new Transport(opts);
  }

  close(): void {
    this.transport.close();
  }

  // --- change feed ---

  /** Appends one change; resolves with its feed index. */
  async post(data: ChangeInput["data"], opts: WriteOptions & { tags?: string[] } = {}): Promise<PostResult> {
    return await this.postBatch([{ data, ...(opts.tags ? { tags: opts.tags } : {}) }], opts);
  }

  /** Appends changes as one atomic batch (at most 1000): indexes index..last, in order. */
  async postBatch(items: readonly ChangeInput[], opts: WriteOptions = {}): Promise<PostResult> {
    return await this.write<PostResult>("POST", "/changes", JSON.stringify(items), { "content-type": "application/json" }, opts);
  }

  async getChange(index: number, opts: ReadOptions = {}): Promise<Change> {
    const a = await this.transport.call({ method: "GET", path: `/changes/${index}`, query: { consistency: opts.consistency }, ...call(opts) });
    return a.json<Change>();
  }

  async listChanges(opts: ListChangesOptions = {}): Promise<ChangePage> {
    const block = opts.blockSec ?? 0;
    const query = { since: opts.since, since_ts: opts.sinceTs, limit: opts.limit, tag: opts.tags, consistency: opts.consistency, block: block > 0 ? block : undefined };
    // A long poll answers after up to `block` seconds: each attempt and the call get that much more time.
    const extraMs = Math.ceil(block * 1000);
    const a = await this.transport.call({ method: "GET", path: "/changes", query, attemptTimeoutMs: this.transport.attemptTimeoutMs + extraMs, ...call(opts), timeoutMs: (opts.timeoutMs ?? this.transport.timeoutMs) + extraMs });
    return a.json<ChangePage>();
  }

  /** Every change after `since`, resuming after dropped connections and loading checkpoints on 410 (see FollowOptions). */
  follow(opts: FollowOptions = {}): AsyncGenerator<Change, void, undefined> {
    return follow(this, opts);
  }

  // --- key-value ---

  async put(key: string, value: unknown, opts: KvPutOptions = {}): Promise<KvWriteResult> {
    const bytes = value instanceof Uint8Array;
    const body = bytes ? value : typeof value === "string" && opts.contentType?.startsWith("text/") ? value : JSON.stringify(value);
    const headers: Record<string, string> = { "content-type": opts.contentType ?? (bytes ? "application/octet-stream" : "application/json") };
    if (opts.ifMatch !== undefined) headers["if-match"] = opts.ifMatch === "*" ? "*" : `"${opts.ifMatch}"`;
    if (opts.ifNoneMatch) headers["if-none-match"] = "*";
    return await this.write<KvWriteResult>("PUT", kvPath(key), body, headers, opts);
  }

  /** The value, or null when the key does not exist. */
  async get(key: string, opts: ReadOptions = {}): Promise<KvValue | null> {
    let a: Answer;
    try {
      a = await this.transport.call({ method: "GET", path: kvPath(key), query: { consistency: opts.consistency }, ...call(opts) });
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
    const bytes = a.bytes;
    return {
      key,
      version: Number(a.headers.get("x-cairn-version") ?? "0"),
      contentType: a.headers.get("content-type") ?? "application/octet-stream",
      bytes,
      text: () => new TextDecoder().decode(bytes),
      json: <T>() => JSON.parse(new TextDecoder().decode(bytes)) as T,
    };
  }

  async del(key: string, opts: WriteOptions & { ifMatch?: number } = {}): Promise<KvWriteResult> {
    const headers: Record<string, string> = opts.ifMatch === undefined ? {} : { "if-match": `"${opts.ifMatch}"` };
    return await this.write<KvWriteResult>("DELETE", kvPath(key), undefined, headers, opts);
  }

  async list(opts: ReadOptions & { prefix?: string; after?: string; limit?: number } = {}): Promise<KvListPage> {
    const a = await this.transport.call({ method: "GET", path: "/kv", query: { prefix: opts.prefix, after: opts.after, limit: opts.limit, consistency: opts.consistency }, ...call(opts) });
    return a.json<KvListPage>();
  }

  /** An etcd-style transaction: if every compare holds, success runs, else failure. */
  async txn(t: TxnRequest, opts: WriteOptions = {}): Promise<TxnResult> {
    return await this.write<TxnResult>("POST", "/txn", JSON.stringify(t), { "content-type": "application/json" }, opts);
  }

  // --- operations ---

  async status(opts: CallOptions = {}): Promise<NodeStatus & { auth?: string }> {
    return (await this.transport.call({ method: "GET", path: "/status", ...call(opts) })).json();
  }

  async health(opts: CallOptions = {}): Promise<{ ok: boolean; id: string; version: string }> {
    return (await this.transport.call({ method: "GET", path: "/health", ...call(opts) })).json();
  }

  async transferLeader(to?: string, opts: CallOptions = {}): Promise<{ from: string; to: string }> {
    const body = JSON.stringify(to === undefined ? {} : { to });
    return (await this.transport.call({ method: "POST", path: "/admin/leader", body, headers: { "content-type": "application/json" }, ...call(opts) })).json();
  }

  async createCheckpoint(opts: CallOptions = {}): Promise<CheckpointInfo> {
    return (await this.transport.call({ method: "POST", path: "/admin/checkpoint", ...call({ timeoutMs: 60_000, ...opts }) })).json<{ checkpoint: CheckpointInfo }>().checkpoint;
  }

  async checkpoints(opts: CallOptions = {}): Promise<CheckpointInfo[]> {
    return (await this.transport.call({ method: "GET", path: "/checkpoints", ...call(opts) })).json<{ checkpoints: CheckpointInfo[] }>().checkpoints;
  }

  /** A durable local queue of writes, delivered in order when the cluster can take them (see Outbox). */
  async outbox(opts: OutboxOptions): Promise<Outbox> {
    const { Outbox } = await import("./outbox.ts");
    return Outbox.open(this, opts);
  }

  /** A write with its Idempotency-Key; the key is in the result. */
  private async write<T>(method: string, path: string, body: string | Uint8Array | undefined, headers: Record<string, string>, opts: WriteOptions): Promise<T & { idempotencyKey: string }> {
    const idempotencyKey = opts.idempotencyKey ?? newIdempotencyKey();
    const a = await this.transport.call({ method, path, headers: { ...headers, "idempotency-key": idempotencyKey }, ...(body === undefined ? {} : { body: typeof body === "string" ? enc.encode(body) : body }), ...call(opts) });
    return { ...a.json<T>(), idempotencyKey };
  }
}

function call(o: CallOptions): CallOptions {
  return { ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }), ...(o.signal ? { signal: o.signal } : {}) };
}

/** Slashes stay (they are part of the key); everything else is percent-encoded. */
function kvPath(key: string): string {
  return "/kv/" + key.split("/").map(encodeURIComponent).join("/");
}

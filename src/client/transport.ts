/**
 * The client's way to the cluster: the node list, the CA, the token, leader
 * following, and retries with backoff inside a deadline.
 *
 * What is retried: every request that reached no node (connection refused,
 * reset, attempt timeout) and every 502/503/504/507, on the next node, after
 * Retry-After or an exponential backoff with jitter. Reads are safe to repeat;
 * writes are made safe by the Idempotency-Key the client attaches to every
 * write (the server answers a repeated key with the first result, for 24 h
 * and the newest 100,000 keys). Nothing else is retried.
 */
import { readFileSync, existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { caFetch, type HttpFetch } from "../platform/client-fetch.ts";
import { errorOf, UnavailableError, type CairnError } from "./errors.ts";

/** The parts of a cluster file the client reads. */
export interface ClusterFileLike {
  readonly nodes: readonly { readonly id: string; readonly api: string }[];
  readonly tls?: { readonly ca?: string };
}

export interface ClientOptions {
  /** A cluster file: its path (its tls.ca is then found beside it) or its parsed content. */
  readonly cluster?: string | ClusterFileLike;
  /** API URLs, instead of or besides the cluster file. */
  readonly urls?: readonly string[];
  /** The cluster CA (PEM text) to trust for https URLs. */
  readonly ca?: string;
  /** A file holding the CA (PEM). */
  readonly caFile?: string;
  /** Bearer token; default the CAIRN_TOKEN environment variable. */
  readonly token?: string;
  /** Deadline of one call, retries included (default 10 s). */
  readonly timeoutMs?: number;
  /** Deadline of one attempt on one node (default 5 s). */
  readonly attemptTimeoutMs?: number;
  /** Attempts of one call at most (default 50). */
  readonly attemptsMax?: number;
  /** Backoff between attempts: base and cap (default 50 ms, 2 s). */
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  /** Another fetch (tests, proxies); it must trust the CA itself. */
  readonly fetch?: HttpFetch;
}

export interface CallOptions {
  /** Overrides the client's timeoutMs for this call. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface RequestSpec extends CallOptions {
  readonly method: string;
  readonly path: string;
  readonly query?: Record<string, string | number | readonly string[] | undefined>;
  readonly headers?: Record<string, string>;
  readonly body?: Uint8Array | string;
  /** Per-attempt deadline (a long poll needs its block time plus some). */
  readonly attemptTimeoutMs?: number;
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly bytes: Uint8Array;
  /** The node that answered. */
  readonly url: string;
  json<T = Record<string, unknown>>(): T;
}

const DEFAULTS = { timeoutMs: 10_000, attemptTimeoutMs: 5_000, attemptsMax: 50, backoffBaseMs: 50, backoffMaxMs: 2_000 };
const URLS_MAX = 1000;
const LEADER_SEEK_MS = 250;
const LEADER_SEEK_TRIES = 40;
const ANSWER_BYTES_MAX = 64 * 1024 * 1024;

declare const process: { env: Record<string, string | undefined> } | undefined;

function envToken(): string | undefined {
  try {
    return typeof process !== "undefined" ? process.env.CAIRN_TOKEN : undefined;
  } catch {
    return undefined; // Deno without --allow-env
  }
}

/** The node URLs and the CA of the options. */
export function resolveNodes(opts: ClientOptions): { urls: string[]; ca?: string } {
  let file: ClusterFileLike | undefined;
  let fileDir: string | undefined;
  if (typeof opts.cluster === "string") {
    const path = resolve(opts.cluster);
    file = JSON.parse(readFileSync(path, "utf8")) as ClusterFileLike;
    fileDir = dirname(path);
  } else file = opts.cluster;
  const urls = [...(file?.nodes ?? []).map((n) => n.api), ...(opts.urls ?? [])].map((u) => u.replace(/\/+$/, ""));
  const unique = [...new Set(urls)];
  if (unique.length === 0) throw new TypeError("the client has no node to talk to: pass cluster (a cluster file) or urls");
  if (unique.length > URLS_MAX) throw new TypeError(`${unique.length} node URLs, over ${URLS_MAX}`);
  for (const u of unique) if (!/^https?:\/\//.test(u)) throw new TypeError(`node URL ${JSON.stringify(u)} is not http(s)://HOST:PORT`);
  const ca = opts.ca ?? (opts.caFile ? readFileSync(opts.caFile, "utf8") : caBeside(file, fileDir));
  return ca === undefined ? { urls: unique } : { urls: unique, ca };
}

/** The cluster file's tls.ca (with ${id} of any node), or DIR/ca/ca.pem as `cairn init` writes it. */
function caBeside(file: ClusterFileLike | undefined, dir: string | undefined): string | undefined {
  if (!file || dir === undefined) return undefined;
  const tmpl = file.tls?.ca;
  const tries = tmpl ? file.nodes.map((n) => resolve(dir, tmpl.replaceAll("${id}", n.id))) : [];
  tries.push(resolve(dir, "ca", "ca.pem"));
  const found = tries.find((p) => existsSync(p));
  return found === undefined ? undefined : readFileSync(found, "utf8");
}

export class Transport {
  readonly urls: string[];
  private preferred = 0;
  private readonly fetch: HttpFetch;
  private readonly o: typeof DEFAULTS;
  private token: string | undefined;

  constructor(opts: ClientOptions) {
    const { urls, ca } = resolveNodes(opts);
    this.urls = urls;
    this.fetch = opts.fetch ?? caFetch(ca === undefined ? {} : { ca });
    this.token = opts.token ?? envToken();
    this.o = { ...DEFAULTS, ...definedOnly(opts) };
  }

  setToken(token: string | undefined): void {
    this.token = token;
  }

  /** The deadline of a call that names none. */
  get timeoutMs(): number {
    return this.o.timeoutMs;
  }

  get attemptTimeoutMs(): number {
    return this.o.attemptTimeoutMs;
  }

  /** The node requests go to first (the last one that answered well, or the leader found by /status). */
  get current(): string {
    return this.urls[this.preferred]!;
  }

  private closed = false;

  close(): void {
    this.closed = true;
    this.fetch.close();
  }

  /** One call: attempts on nodes in turn until an answer that is not retryable, or the deadline. */
  async call(spec: RequestSpec): Promise<Answer> {
    const deadline = Date.now() + (spec.timeoutMs ?? this.o.timeoutMs);
    let last: CairnError | undefined;
    for (let attempt = 1; attempt <= this.o.attemptsMax; attempt++) {
      spec.signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (left <= 0) break;
      const url = this.current;
      const out = await this.attempt(url, spec, Math.min(left, spec.attemptTimeoutMs ?? this.o.attemptTimeoutMs));
      if (!(out instanceof UnavailableError)) {
        if (out.status < 400) return out as Answer;
        throw errorOf(out.status, safeJson(out.bytes), out.headers.get("retry-after"), `${spec.method} ${spec.path} on ${url}`);
      }
      last = out;
      this.failed(url);
      const waitMs = Math.min(out.retryAfterMs ?? this.backoff(attempt), Math.max(0, deadline - Date.now()));
      if (attempt % this.urls.length === 0 || out.status !== 0) await sleep(waitMs, spec.signal);
    }
    const what = last ? last.message : "no attempt was made";
    throw new UnavailableError(`${spec.method} ${spec.path}: no node gave an answer within the deadline (last: ${what}); the cluster may be down or without quorum: retry later`, last?.status ?? 0, last?.code ?? "unavailable", last?.body ?? {});
  }

  /** An answer, or an UnavailableError for what is worth another attempt. */
  private async attempt(url: string, spec: RequestSpec, ms: number): Promise<Answer | UnavailableError> {
    const signals = [AbortSignal.timeout(Math.max(1, ms)), ...(spec.signal ? [spec.signal] : [])];
    try {
      const r = await this.fetch(url + pathWithQuery(spec), { method: spec.method, headers: this.headersOf(spec), ...(spec.body === undefined ? {} : { body: spec.body as BodyInit }), signal: AbortSignal.any(signals) });
      const bytes = await readLimited(r);
      const a = answer(r, bytes, url);
      if (r.status === 502 || r.status === 503 || r.status === 504 || r.status === 507) {
        return errorOf(r.status, safeJson(bytes), r.headers.get("retry-after"), `${spec.method} ${spec.path} on ${url}`) as UnavailableError;
      }
      if (r.status < 400) this.preferred = this.urls.indexOf(url);
      return a;
    } catch (e) {
      if (spec.signal?.aborted) throw spec.signal.reason ?? e;
      return new UnavailableError(`${spec.method} ${spec.path} on ${url}: ${(e as Error).message}`, 0, "unreachable");
    }
  }

  /** One GET with the token, no retries (for streams and downloads). */
  rawFetch(url: string, signal: AbortSignal): Promise<Response> {
    return this.fetch(url, { headers: this.headersOf({ method: "GET", path: "" }), signal });
  }

  private headersOf(spec: RequestSpec): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...spec.headers };
  }

  /** After a failure on `url`: the next node; and find the leader in the background. */
  private failed(url: string): void {
    if (this.current !== url) return;
    this.preferred = (this.preferred + 1) % this.urls.length;
    this.seekLeader();
  }

  private seeking = false;

  /**
   * Asks /status who leads, every LEADER_SEEK_MS up to LEADER_SEEK_TRIES
   * times (an election takes a moment), and moves to the leader once one is
   * named: writes answered by a follower cost a forwarding hop.
   */
  private seekLeader(): void {
    if (this.seeking || this.urls.length < 2) return;
    this.seeking = true;
    let tries = 0;
    const step = async () => {
      const found = await this.findLeader().catch(() => null);
      if (found === null && ++tries < LEADER_SEEK_TRIES && !this.closed) {
        const t = setTimeout(step, LEADER_SEEK_MS) as unknown as { unref?: () => void };
        t.unref?.(); // never keeps the application's process alive
      } else this.seeking = false;
    };
    void step();
  }

  /** Points the client at the leader named by the current node's /status, if it knows one. */
  async findLeader(): Promise<string | null> {
    const url = this.current;
    let r: Response;
    try {
      r = await this.fetch(`${url}/status`, { headers: this.headersOf({ method: "GET", path: "/status" }), signal: AbortSignal.timeout(1000) });
    } catch (e) {
      if (this.current === url) this.preferred = (this.preferred + 1) % this.urls.length;
      throw e;
    }
    if (r.status !== 200) return null;
    const api = ((await r.json()) as { leader?: { api?: string | null } | null }).leader?.api;
    if (typeof api !== "string") return null;
    const i = this.urls.indexOf(api.replace(/\/+$/, ""));
    if (i >= 0 && this.current === url) this.preferred = i;
    return i >= 0 ? api : null;
  }

  private backoff(attempt: number): number {
    const cap = Math.min(this.o.backoffMaxMs, this.o.backoffBaseMs * 2 ** Math.min(attempt - 1, 16));
    return cap / 2 + Math.random() * (cap / 2);
  }
}

function definedOnly(o: ClientOptions): Partial<typeof DEFAULTS> {
  const out: Partial<typeof DEFAULTS> = {};
  for (const k of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) if (typeof o[k] === "number") out[k] = o[k];
  return out;
}

function pathWithQuery(spec: RequestSpec): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(spec.query ?? {})) {
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) q.append(k, String(x));
  }
  const s = q.toString();
  return s === "" ? spec.path : `${spec.path}?${s}`;
}

async function readLimited(r: Response): Promise<Uint8Array> {
  const declared = Number(r.headers.get("content-length") ?? "0");
  if (declared > ANSWER_BYTES_MAX) throw new Error(`the answer is ${declared} bytes, over ${ANSWER_BYTES_MAX}`);
  const b = new Uint8Array(await r.arrayBuffer());
  if (b.byteLength > ANSWER_BYTES_MAX) throw new Error(`the answer is ${b.byteLength} bytes, over ${ANSWER_BYTES_MAX}`);
  return b;
}

function answer(r: Response, bytes: Uint8Array, url: string): Answer {
  return { status: r.status, headers: r.headers, bytes, url, json: <T>() => safeJson(bytes) as T };
}

export function safeJson(bytes: Uint8Array): Record<string, unknown> {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : { value: v };
  } catch {
    return {};
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((res, rej) => {
    if (ms <= 0) return res();
    const t = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", abort);
      res();
    }
    function abort() {
      clearTimeout(t);
      rej(signal!.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/** Streams GET `path` from the first node that answers 200 into the file `dest`, at most `bytesMax`. */
export async function downloadTo(t: Transport, spec: { path: string; dest: string; bytesMax: number; timeoutMs: number; signal?: AbortSignal }): Promise<Headers> {
  const { open } = await import("node:fs/promises");
  const deadline = Date.now() + spec.timeoutMs;
  let lastErr: unknown;
  for (let i = 0; i < t.urls.length * 3 && Date.now() < deadline; i++) {
    const url = t.urls[(t.urls.indexOf(t.current) + i) % t.urls.length]!;
    try {
      const r = await t.rawFetch(url + spec.path, AbortSignal.any([AbortSignal.timeout(Math.max(1, deadline - Date.now())), ...(spec.signal ? [spec.signal] : [])]));
      if (r.status !== 200 || r.body === null) {
        lastErr = errorOf(r.status, safeJson(new Uint8Array(await r.arrayBuffer())), r.headers.get("retry-after"), `GET ${spec.path} on ${url}`);
        continue;
      }
      const f = await open(spec.dest, "w");
      let size = 0;
      try {
        for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
          size += chunk.byteLength;
          if (size > spec.bytesMax) throw new Error(`GET ${spec.path}: over ${spec.bytesMax} bytes; raise checkpointBytesMax`);
          await f.write(chunk);
        }
        await f.sync();
      } finally {
        await f.close();
      }
      return r.headers;
    } catch (e) {
      if (spec.signal?.aborted) throw e;
      lastErr = e;
    }
  }
  throw lastErr instanceof Error ? lastErr : new UnavailableError(`GET ${spec.path}: no node answered`, 0, "unreachable");
}

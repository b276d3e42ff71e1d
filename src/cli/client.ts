/**
 * The client commands: they talk to the HTTP API of any node (--url) or of
 * the nodes in a cluster file (--config), trusting the cluster CA for https,
 * and find the leader themselves for writes.
 */
import { existsSync, readFileSync } from "node:fs";
import { loadClusterFileSync, type ClusterConfig } from "../discovery/load.ts";
import { httpClient, type HttpFetch } from "../platform/http.ts";
import { expectArgs, intOption, parse, UsageError, type Options } from "./args.ts";
import { schemeHint } from "./scheme.ts";

export const CLIENT_OPTIONS = {
  url: { type: "string" },
  config: { type: "string" },
  ca: { type: "string" },
  token: { type: "string" },
} as const satisfies Options;

export interface Target {
  readonly urls: string[];
  readonly fetch: HttpFetch;
  readonly token?: string;
}

export function target(values: { url?: string; config?: string; ca?: string; token?: string }): Target {
  let urls: string[];
  let caPath = values.ca;
  if (values.url) urls = [checkUrl(values.url).replace(/\/$/, "")];
  else if (values.config) {
    const r = loadClusterFileSync(values.config);
    if (!r.ok) throw new UsageError(`cannot use cluster file: ${r.error.message}`);
    urls = r.config.nodes.map((n) => n.api);
    caPath ??= clusterCaPath(r.config);
  } else throw new UsageError("say where the cluster is: --url URL (any node's API) or --config FILE (the cluster file)");
  const ca = caPath ? readCa(caPath) : undefined;
  return { urls, fetch: httpClient({ ca }), token: values.token ?? process.env.CAIRN_TOKEN };
}

/** An http(s) URL, or a UsageError that shows the form. */
function checkUrl(u: string): string {
  let url: URL | undefined;
  try {
    url = new URL(u);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new UsageError(`--url ${JSON.stringify(u)} is not an http:// or https:// URL: write it like --url https://127.0.0.1:7401 (a node's "api" in the cluster file)`);
  }
  return u;
}

function readCa(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read the CA certificate ${path} (--ca or the cluster file's tls.ca): ${(e as Error).message}`);
  }
}

/**
 * The CA certificate a cluster file names for its nodes. With per-node
 * bundles ("tls/${id}/ca.pem") every node's copy is the same CA; a host holds
 * only its own bundle, so the first copy that exists is used.
 */
function clusterCaPath(config: ClusterConfig): string | undefined {
  if (!config.tls) return undefined;
  const paths = [...new Set(config.nodes.map((n) => n.tls?.ca).filter((p): p is string => p !== undefined))];
  const found = paths.find((p) => existsSync(p));
  if (found === undefined) throw new UsageError(`no CA certificate found for the cluster file's tls section (looked for ${paths.slice(0, 3).join(", ")}${paths.length > 3 ? ", ..." : ""}): pass --ca FILE`);
  return found;
}

export class ClientError extends Error {
  override name = "ClientError";
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

/** Sends to the first node that answers; a connection error moves on to the next. */
export async function request(t: Target, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (t.token) headers.set("authorization", `Bearer ${t.token}`);
  const errors: string[] = [];
  for (const url of t.urls) {
    try {
      return await t.fetch(`${url}${path}`, { ...init, headers });
    } catch (e) {
      // A closed or reset connection is what an http:// URL gets from an HTTPS port (and the reverse fails the handshake).
      const hint = await schemeHint(url);
      // Deno says only "fetch failed"; the reason is in `cause`.
      const cause = (e as { cause?: unknown }).cause;
      const why = cause instanceof Error ? ` (${cause.message})` : "";
      errors.push(`${url}: ${(e as Error).message}${why}${hint ? `\n    ${hint}` : ""}`);
    }
  }
  throw new ClientError(`no node answered:\n  ${errors.join("\n  ")}\ncheck that the node runs and that the URL (scheme, host, port) is a node's "api" in the cluster file`, 0);
}

/** Parses a JSON answer; a non-2xx answer becomes a ClientError with the server's message. */
export async function json(res: Response): Promise<unknown> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } })?.error;
    const hint = res.status === 401 ? `; pass --token TOKEN or set CAIRN_TOKEN (cairn init printed an admin token; cairn token add makes more)` : "";
    throw new ClientError(`HTTP ${res.status}${err?.code ? ` ${err.code}` : ""}: ${err?.message ?? text}${hint}`, res.status);
  }
  return body;
}

const print = (v: unknown) => console.log(typeof v === "string" ? v : JSON.stringify(v, null, 2));

// `cairn status` and `cairn top` are in status.ts.

const KV_OPTIONS = { ...CLIENT_OPTIONS, "content-type": { type: "string" }, "if-match": { type: "string" }, stale: { type: "boolean", default: false } } as const;

function keyPath(key: string | undefined, usage: string): string {
  if (!key) throw new UsageError(usage);
  return `/kv/${key.split("/").map(encodeURIComponent).join("/")}`;
}

export async function put(argv: string[]): Promise<number> {
  const usage = "cairn put KEY VALUE [--content-type T] [--if-match VERSION] (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, KV_OPTIONS, usage);
  expectArgs(positionals, { min: 2, max: 2 }, usage);
  const headers: Record<string, string> = { "content-type": values["content-type"] ?? "text/plain; charset=utf-8" };
  if (values["if-match"]) headers["if-match"] = values["if-match"];
  print(await json(await request(target(values), keyPath(positionals[0], usage), { method: "PUT", body: positionals[1], headers })));
  return 0;
}

export async function get(argv: string[]): Promise<number> {
  const usage = "cairn get KEY [--stale] (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, KV_OPTIONS, usage);
  expectArgs(positionals, { min: 1, max: 1 }, usage);
  const res = await request(target(values), keyPath(positionals[0], usage) + (values.stale ? "?consistency=stale" : ""));
  if (!res.ok) await json(res);
  process.stdout.write(new Uint8Array(await res.arrayBuffer()));
  if (process.stdout.isTTY) process.stdout.write("\n");
  return 0;
}

export async function del(argv: string[]): Promise<number> {
  const usage = "cairn del KEY [--if-match VERSION] (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, KV_OPTIONS, usage);
  expectArgs(positionals, { min: 1, max: 1 }, usage);
  const headers: Record<string, string> = values["if-match"] ? { "if-match": values["if-match"] } : {};
  print(await json(await request(target(values), keyPath(positionals[0], usage), { method: "DELETE", headers })));
  return 0;
}

const POST_OPTIONS = { ...CLIENT_OPTIONS, tag: { type: "string", multiple: true }, "idempotency-key": { type: "string" } } as const;

export async function post(argv: string[]): Promise<number> {
  const usage = "cairn post JSON [--tag T]... [--idempotency-key K] (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, POST_OPTIONS, usage);
  expectArgs(positionals, { min: 1, max: 1 }, usage);
  let data: unknown;
  try {
    data = JSON.parse(positionals[0]!);
  } catch (e) {
    throw new UsageError(`JSON argument does not parse: ${(e as Error).message}`);
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (values["idempotency-key"]) headers["idempotency-key"] = values["idempotency-key"];
  const body = JSON.stringify({ data, tags: values.tag ?? [] });
  print(await json(await request(target(values), "/changes", { method: "POST", body, headers })));
  return 0;
}

const TAIL_OPTIONS = { ...CLIENT_OPTIONS, since: { type: "string", default: "0" }, tag: { type: "string", multiple: true }, follow: { type: "boolean", default: false }, limit: { type: "string", default: "100" } } as const;

/** Prints committed changes as NDJSON; with --follow, long-polls for more until interrupted. */
export async function tail(argv: string[]): Promise<number> {
  const usage = "cairn tail [--since N] [--tag T]... [--follow] (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, TAIL_OPTIONS, usage);
  expectArgs(positionals, { min: 0, max: 0 }, usage);
  let since = intOption(values.since, "since", 0, { min: 0, max: Number.MAX_SAFE_INTEGER });
  const limit = intOption(values.limit, "limit", 100, { min: 1, max: 1000 });
  const t = target(values);
  for (;;) {
    const q = new URLSearchParams({ since: String(since), limit: String(limit) });
    for (const tag of values.tag ?? []) q.append("tag", tag);
    if (values.follow) q.set("block", "30");
    const page = (await json(await request(t, `/changes?${q}`))) as { changes: unknown[]; next: number; atEnd: boolean };
    for (const c of page.changes) console.log(JSON.stringify(c));
    since = page.next;
    if (!values.follow && page.atEnd) return 0;
  }
}

export async function leader(argv: string[]): Promise<number> {
  const usage = "cairn leader transfer [--to ID] (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, to: { type: "string" } } as const, usage);
  expectArgs(positionals, { min: 1, max: 1 }, usage);
  if (positionals[0] !== "transfer") throw new UsageError(`unknown leader action ${JSON.stringify(positionals[0])}: the only one is transfer\n\n${usage}`);
  const body = JSON.stringify(values.to ? { to: values.to } : {});
  print(await json(await request(target(values), "/admin/leader", { method: "POST", body, headers: { "content-type": "application/json" } })));
  return 0;
}

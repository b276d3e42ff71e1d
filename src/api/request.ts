/**
 * Parsing of what a request carries: bodies (bounded), JSON, query
 * parameters, keys in paths and the version preconditions of ETags. Each
 * failure is an ApiError that says which value was wrong and what to send.
 */
import { ApiError, badRequest } from "./errors.ts";

/** Reads the whole body, refusing more than `max` bytes (by Content-Length, or while reading a body without one). */
export async function readBodyLimited(req: Request, max: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  const length = declared !== null && /^\d+$/.test(declared.trim()) ? Number(declared) : undefined;
  if (length !== undefined && length > max) throw tooLarge(length, max);
  if (req.body === null) return new Uint8Array(0);
  // A declared length within the limit bounds what the server reads (HTTP/1.1 framing): one native
  // read, without the stream machinery (about a tenth of the leader's CPU per small write).
  if (length !== undefined) {
    const body = new Uint8Array(await req.arrayBuffer());
    if (body.byteLength > max) throw tooLarge(body.byteLength, max, true); // a Request built in-process may carry more than it declares
    return body;
  }
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(size, max, true);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function tooLarge(size: number, max: number, streamed = false): ApiError {
  const what = streamed ? `over ${max} bytes (read ${size} so far)` : `${size} bytes (Content-Length), over ${max}`;
  return new ApiError(413, "too_large", `request body is ${what}: send at most ${max} bytes`);
}

/** application/json or any application/...+json, parameters ignored. */
export function isJsonContentType(ct: string | null): boolean {
  if (ct === null) return false;
  const mime = ct.split(";")[0]!.trim().toLowerCase();
  return mime === "application/json" || (mime.startsWith("application/") && mime.endsWith("+json"));
}

/**
 * The parsed JSON body. `optional`: an empty body (with or without a content
 * type) gives undefined instead of an error.
 */
export async function readJsonBody(req: Request, max: number, opts: { optional?: boolean } = {}): Promise<unknown> {
  const ct = req.headers.get("content-type");
  const bytes = await readBodyLimited(req, max);
  if (bytes.byteLength === 0 && opts.optional) return undefined;
  if (!isJsonContentType(ct)) {
    throw new ApiError(415, "unsupported_media_type", `Content-Type ${ct === null ? "is missing" : JSON.stringify(ct)}: send application/json`);
  }
  return parseJsonBytes(bytes);
}

export function parseJsonBytes(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "bad_json", "the body is not valid UTF-8: send UTF-8 JSON");
  }
  if (text.trim() === "") throw new ApiError(400, "bad_json", "the body is empty: send a JSON document");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, "bad_json", `the body is not valid JSON: ${(err as Error).message}`);
  }
}

/** A whole number query parameter within [min, max]; `fallback` when absent. */
export function intParam(raw: string | undefined, name: string, range: { min: number; max: number }, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  if (!/^-?\d+$/.test(raw)) throw badRequest(`${name}=${JSON.stringify(raw)} is not a whole number`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < range.min || n > range.max) {
    throw badRequest(`${name}=${raw} is out of range: use ${range.min} to ${range.max}`);
  }
  return n;
}

/** The `since` of a feed query: absent (undefined) or a non-negative feed index. */
export function sinceParam(raw: string | undefined, name = "since"): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  return intParam(raw, name, { min: 0, max: Number.MAX_SAFE_INTEGER }, 0);
}

/** `since_ts`: milliseconds since the epoch, or an ISO 8601 time. */
export function sinceTsParam(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (Number.isSafeInteger(n)) return n;
  }
  const t = Date.parse(raw);
  if (Number.isNaN(t)) throw badRequest(`since_ts=${JSON.stringify(raw)} is neither milliseconds since 1970 nor an ISO 8601 time (2024-05-01T12:00:00Z)`);
  return Math.max(0, t);
}

/** `block`: seconds to wait (decimals allowed), capped at `maxSec`. */
export function blockParam(raw: string | undefined, maxSec: number): number {
  if (raw === undefined || raw === "") return 0;
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || !Number.isFinite(n)) throw badRequest(`block=${JSON.stringify(raw)} is not a number of seconds`);
  return Math.min(n, maxSec);
}

export type Consistency = "linearizable" | "stale";

export function consistencyParam(raw: string | undefined): Consistency {
  if (raw === undefined || raw === "" || raw === "linearizable" || raw === "strong") return "linearizable";
  if (raw === "stale") return "stale";
  throw badRequest(`consistency=${JSON.stringify(raw)} is not one of linearizable, stale`);
}

export type Wait = "applied" | "accepted";

export function waitParam(raw: string | undefined): Wait {
  if (raw === undefined || raw === "" || raw === "applied") return "applied";
  if (raw === "none" || raw === "accepted") return "accepted";
  throw badRequest(`wait=${JSON.stringify(raw)} is not one of none, applied`);
}

/**
 * The key from a raw (still percent-encoded) path after `prefix`. Slashes
 * are part of the key; an empty key is refused. Length and Unicode rules are
 * the state machine's (checked again when proposed).
 */
export function keyFromPath(rawPath: string, prefix: string): string {
  const raw = rawPath.startsWith(prefix) ? rawPath.slice(prefix.length) : "";
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw badRequest(`the key ${JSON.stringify(raw)} has a broken percent-encoding: encode it with encodeURIComponent`);
  }
  if (key === "") throw badRequest(`the key is empty: use ${prefix}KEY`);
  return key;
}

/** The raw path of a URL (what the client sent, percent-encoding intact). */
export function rawPathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return "/";
  const end = url.slice(start).search(/[?#]/);
  return end < 0 ? url.slice(start) : url.slice(start, start + end);
}

/** A version precondition: a specific version, or `*` (any existing version). */
export type VersionMatch = { readonly kind: "any" } | { readonly kind: "version"; readonly version: number };

/**
 * If-Match: `*`, `5` or the ETag `"5"`. One value only; weak tags (W/"5")
 * are refused because If-Match compares strongly.
 */
export function parseIfMatch(raw: string | null): VersionMatch | undefined {
  if (raw === null) return undefined;
  const v = raw.trim();
  if (v === "*") return { kind: "any" };
  if (v.includes(",")) throw badPrecondition(`If-Match ${JSON.stringify(raw)} lists several versions: send exactly one`);
  if (/^W\//i.test(v)) throw badPrecondition(`If-Match ${JSON.stringify(raw)} is a weak ETag: send the version as "N"`);
  const m = /^"?(\d+)"?$/.exec(v);
  const n = m ? Number(m[1]) : NaN;
  if (!m || !Number.isSafeInteger(n) || (v.startsWith('"') !== v.endsWith('"'))) {
    throw badPrecondition(`If-Match ${JSON.stringify(raw)} is not a version: send the ETag from a GET ("5"), a plain number, or *`);
  }
  return { kind: "version", version: n };
}

/** If-None-Match on writes: only `*` (create only) has a meaning. */
export function parseIfNoneMatchStar(raw: string | null): boolean {
  if (raw === null) return false;
  if (raw.trim() === "*") return true;
  throw badPrecondition(`If-None-Match ${JSON.stringify(raw)} on a write: only * (create only) is supported`);
}

/** If-None-Match on reads: the versions the client already has (for 304). */
export function ifNoneMatchVersions(raw: string | null): { any: boolean; versions: Set<number> } {
  const out = { any: false, versions: new Set<number>() };
  if (raw === null) return out;
  for (const part of raw.split(",")) {
    const p = part.trim().replace(/^W\//i, "");
    if (p === "*") out.any = true;
    const m = /^"?(\d+)"?$/.exec(p);
    if (m) out.versions.add(Number(m[1]));
  }
  return out;
}

export function etagOf(version: number): string {
  return `"${version}"`;
}

function badPrecondition(message: string): ApiError {
  return new ApiError(400, "bad_precondition", message);
}

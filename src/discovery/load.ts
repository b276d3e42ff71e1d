/**
 * Reading the cluster file into a resolved ClusterConfig: defaults filled in,
 * addresses normalised, TLS paths made absolute (relative to the file's
 * directory) and `${id}` substituted per node.
 *
 * Nothing here throws for a bad file: the result says ok or carries one
 * ClusterFileError whose message is a single line naming the problem.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { assert } from "../util/assert.ts";
import { ClusterFileError } from "./errors.ts";
import { findJsonProblem } from "./jsonsyntax.ts";
import { type ClusterFile, type NodeRole, parseApiUrl, SRV_INTERVAL_MS_DEFAULT, VALIDATOR_DEFAULTS, parseHostPort, type RaftTiming, raftTiming, type TlsPaths } from "./schema.ts";
import { validateClusterFile } from "./validate.ts";

/** A cluster file larger than this is refused unread (it lists at most 64 nodes). */
export const CLUSTER_FILE_BYTES_MAX = 1 << 20;

export interface ClusterNode {
  readonly id: string;
  /** As written, e.g. "10.0.0.1:7400" or "[fd00::1]:7400". */
  readonly peer: string;
  /** Canonical host (lower case, IPv6 without brackets) and port of `peer`. */
  readonly peerHost: string;
  readonly peerPort: number;
  /** Normalised URL without a trailing "/", e.g. "https://10.0.0.1:7401". */
  readonly api: string;
  /** "voter" unless the file says "learner". */
  readonly role: NodeRole;
  /** This node's TLS files, absolute, `${id}` substituted; null without a "tls" section. */
  readonly tls: TlsPaths | null;
}

/** A validator of the file's "validators", defaults filled in. */
export interface ValidatorConfig {
  readonly url: string;
  readonly tags: readonly string[];
  readonly timeoutMs: number;
  readonly onError: "reject" | "accept";
  readonly concurrencyMax: number;
  readonly bodyBytesMax: number;
}

/** The file's "discovery": the node list comes from DNS SRV records (srv.ts). */
export interface DiscoveryConfig {
  readonly srv: string;
  readonly intervalMs: number;
  /** "host:port" of the DNS server to ask, or null for the system's resolvers. */
  readonly server: string | null;
}

export interface ClusterConfig {
  /** Absolute path of the file this came from. */
  readonly path: string;
  readonly cluster: string;
  readonly nodes: readonly ClusterNode[];
  /** The TLS path templates made absolute, `${id}` still in them. */
  readonly tls: TlsPaths | null;
  readonly raft: RaftTiming;
  /** The founding list written by `cairn init`, or null if the file has none. */
  readonly founders: readonly string[] | null;
  /** `"allowShrink": true`: one edit may take a majority of the voters out (plan.ts, shrinkHold). */
  readonly allowShrink: boolean;
  /** Node ids and certificate serials refused as peers (the file's "revoked"); absent = none. */
  readonly revoked?: readonly string[];
  /** The file's "validators" (src/api/validators.ts); empty when none. */
  readonly validators?: readonly ValidatorConfig[];
  /** Set when the node list comes from DNS: `nodes` are then the last good SRV answer. */
  readonly discovery?: DiscoveryConfig | null;
}

export type LoadResult = { ok: true; config: ClusterConfig } | { ok: false; error: ClusterFileError };

/** Reads and checks the cluster file at `path`. */
export async function loadClusterFile(path: string): Promise<LoadResult> {
  const abs = resolve(path);
  const read = await readClusterBytes(abs);
  return read.ok ? parseClusterBytes(read.bytes, abs) : read;
}

/** The same as loadClusterFile, synchronously (for start-up). */
export function loadClusterFileSync(path: string): LoadResult {
  const abs = resolve(path);
  const read = readClusterBytesSync(abs);
  return read.ok ? parseClusterBytes(read.bytes, abs) : read;
}

export type BytesResult = { ok: true; bytes: Uint8Array; sig: string } | { ok: false; error: ClusterFileError; sig: string | null };

/** What identifies one version of the file on disk (the watcher polls it). */
export function statSignature(st: { size: number; mtimeMs: number; ctimeMs: number; ino: number }): string {
  return `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}`;
}

/**
 * The file's bytes, at most CLUSTER_FILE_BYTES_MAX of them. Only a regular
 * file (a symlink to one is fine) is read: a FIFO would block the reader
 * forever and a device such as /dev/zero never ends; and the read stops past
 * the limit even when the file grows after the stat.
 */
export async function readClusterBytes(abs: string): Promise<BytesResult> {
  let sig: string | null = null;
  try {
    const st = await stat(abs);
    sig = statSignature(st);
    const bad = notReadable(abs, st);
    if (bad) return { ok: false, error: bad, sig };
    const fh = await open(abs, "r");
    try {
      const buf = new Uint8Array(CLUSTER_FILE_BYTES_MAX + 1);
      let n = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
        if (bytesRead === 0 || (n += bytesRead) === buf.length) break;
      }
      return n > CLUSTER_FILE_BYTES_MAX ? { ok: false, error: tooLargeError(abs, n), sig } : { ok: true, bytes: buf.slice(0, n), sig };
    } finally {
      await fh.close();
    }
  } catch (e) {
    return { ok: false, error: readError(abs, e), sig };
  }
}

/** readClusterBytes, synchronously. */
export function readClusterBytesSync(abs: string): BytesResult {
  let sig: string | null = null;
  try {
    const st = statSync(abs);
    sig = statSignature(st);
    const bad = notReadable(abs, st);
    if (bad) return { ok: false, error: bad, sig };
    const fd = openSync(abs, "r");
    try {
      const buf = new Uint8Array(CLUSTER_FILE_BYTES_MAX + 1);
      let n = 0;
      for (;;) {
        const got = readSync(fd, buf, n, buf.length - n, null);
        if (got === 0 || (n += got) === buf.length) break;
      }
      return n > CLUSTER_FILE_BYTES_MAX ? { ok: false, error: tooLargeError(abs, n), sig } : { ok: true, bytes: buf.slice(0, n), sig };
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    return { ok: false, error: readError(abs, e), sig };
  }
}

function notReadable(abs: string, st: { isFile(): boolean; isDirectory(): boolean; size: number }): ClusterFileError | null {
  if (st.isDirectory()) return new ClusterFileError("read", abs, ["cannot read it: it is a directory, not a file (EISDIR)"]);
  if (!st.isFile()) return new ClusterFileError("read", abs, ["cannot read it: it is not a regular file (a FIFO, socket or device); put the JSON in a plain file"]);
  return st.size > CLUSTER_FILE_BYTES_MAX ? tooLargeError(abs, st.size) : null;
}

function tooLarge(path: string, size: number): LoadResult {
  return { ok: false, error: tooLargeError(path, size) };
}

export function tooLargeError(path: string, size: number): ClusterFileError {
  const problem = `the file is ${size} bytes, more than the ${CLUSTER_FILE_BYTES_MAX} a cluster file may have`;
  return new ClusterFileError("tooLarge", path, [problem]);
}

export function readError(path: string, e: unknown): ClusterFileError {
  const code = (e as { code?: unknown } | null)?.code;
  const what =
    code === "ENOENT"
      ? "no such file; check the --config path"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied; make it readable by the user running cairn"
        : code === "EISDIR"
          ? "it is a directory, not a file"
          : code === "ELOOP"
            ? "a loop of symbolic links; point the link at the real file"
            : code === "ENOTDIR"
              ? "a part of the path is not a directory; check the --config path"
              : e instanceof Error
            ? e.message
            : String(e);
  return new ClusterFileError("read", path, [`cannot read it: ${what}${typeof code === "string" ? ` (${code})` : ""}`]);
}

/** Decodes, parses, validates and resolves the bytes of a cluster file found at `path`. */
export function parseClusterBytes(bytes: Uint8Array, path: string): LoadResult {
  const abs = resolve(path);
  if (bytes.byteLength > CLUSTER_FILE_BYTES_MAX) return tooLarge(abs, bytes.byteLength);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, error: new ClusterFileError("encoding", abs, ["the file is not valid UTF-8 text"]) };
  }
  return parseClusterText(text, abs);
}

/** Parses, validates and resolves the text of a cluster file found at `path`. */
export function parseClusterText(text: string, path: string): LoadResult {
  const abs = resolve(path);
  const body = text.replace(/^\uFEFF/, "");
  if (body.trim() === "") {
    return { ok: false, error: new ClusterFileError("empty", abs, ["the file is empty (if it is being written, it is read again when done)"]) };
  }
  const syntax = findJsonProblem(body);
  if (syntax) {
    const problem = `invalid JSON at line ${syntax.line}, column ${syntax.column}: ${syntax.message}`;
    return { ok: false, error: new ClusterFileError("syntax", abs, [problem], syntax) };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (e) {
    // findJsonProblem accepted it, so this should not happen; report it anyway.
    return { ok: false, error: new ClusterFileError("syntax", abs, [`invalid JSON: ${(e as Error).message}`]) };
  }
  const v = validateClusterFile(raw);
  if (!v.ok) return { ok: false, error: new ClusterFileError("invalid", abs, v.problems) };
  return { ok: true, config: resolveClusterFile(v.file, abs) };
}

/** Fills defaults and resolves paths of a validated file read from `path`. */
export function resolveClusterFile(file: ClusterFile, path: string): ClusterConfig {
  const abs = resolve(path);
  const dir = dirname(abs);
  const tls = file.tls ? { ca: absPath(dir, file.tls.ca), cert: absPath(dir, file.tls.cert), key: absPath(dir, file.tls.key) } : null;
  const nodes = (file.nodes ?? []).map((n): ClusterNode => {
    const peer = parseHostPort(n.peer);
    const api = parseApiUrl(n.api);
    assert(peer.ok && api.ok, () => `resolveClusterFile: node ${n.id} was not validated`);
    return {
      id: n.id,
      peer: n.peer,
      peerHost: peer.value.host,
      peerPort: peer.value.port,
      api: api.url,
      role: n.role ?? "voter",
      tls: tls ? tlsForId(tls, n.id) : null,
    };
  });
  return {
    path: abs,
    cluster: file.cluster,
    nodes,
    tls,
    raft: raftTiming(file.raft),
    founders: file.founders ?? null,
    allowShrink: file.allowShrink === true,
    revoked: file.revoked ?? [],
    validators: (file.validators ?? []).map((v) => ({ ...VALIDATOR_DEFAULTS, ...v })),
    discovery: file.discovery
      ? { srv: file.discovery.srv.replace(/\.$/, ""), intervalMs: file.discovery.intervalMs ?? SRV_INTERVAL_MS_DEFAULT, server: file.discovery.server ?? null }
      : null,
  };
}

function absPath(dir: string, p: string): string {
  return isAbsolute(p) ? resolve(p) : resolve(dir, p);
}

/** The TLS paths of node `id`: `${id}` in each template replaced by the id. */
export function tlsForId(templates: TlsPaths, id: string): TlsPaths {
  const sub = (s: string) => s.split("${id}").join(id);
  return { ca: sub(templates.ca), cert: sub(templates.cert), key: sub(templates.key) };
}

/** True when two configs say the same thing (the watcher emits only on a difference). */
export function sameClusterConfig(a: ClusterConfig, b: ClusterConfig): boolean {
  // Both are built by resolveClusterFile with the same key order, so their JSON is canonical.
  return JSON.stringify(a) === JSON.stringify(b);
}

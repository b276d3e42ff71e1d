/**
 * The cluster file (cluster.json): its schema and its checks.
 *
 * ```json
 * {
 *   "cluster": "store-42",
 *   "nodes": [
 *     { "id": "n1", "peer": "10.0.0.1:7400", "api": "https://10.0.0.1:7401" },
 *     { "id": "n3", "peer": "10.0.0.3:7400", "api": "https://10.0.0.3:7401", "role": "learner" }
 *   ],
 *   "tls": { "ca": "tls/${id}/ca.pem", "cert": "tls/${id}/node.pem", "key": "tls/${id}/node.key" },
 *   "raft": { "heartbeatMs": 100, "electionMs": 1000 },
 *   "founders": ["n1", "n2", "n3"]
 * }
 * ```
 *
 * Decisions (also for the README):
 *  - Strict: an unknown key anywhere is an error that names it and lists the
 *    known keys. A typo ("heartbeatMS", "rol") would otherwise be ignored in
 *    silence and the default used. A file written for a newer cairn with keys
 *    this version does not know is therefore refused, which under hot reload
 *    means "logged, last good version kept": the safe side. There is no
 *    place for API options (tokens) yet; they will be added as known keys.
 *  - `nodes` may be empty (the node waits until the file lists it).
 *  - `role` defaults to "voter"; "witness" is a voter without a state machine.
 *  - Ids: letters, digits, "_" and "-", starting with a letter or digit, at
 *    most 63 characters. They appear in file names through `${id}`, so they
 *    can never contain "/" or "..". Two ids that differ only in case are
 *    refused as duplicates (they would name the same file on macOS/Windows).
 *  - `peer` is "host:port": IPv4, a DNS name, or an IPv6 address in brackets;
 *    never a wildcard (0.0.0.0, ::), since other nodes dial it.
 *  - `api` is an http:// or https:// URL, without credentials, query or
 *    fragment; a path prefix is allowed (reverse proxy). It is normalised to
 *    have no trailing "/".
 *  - `tls` paths may contain `${id}` (any other `${...}` is an error);
 *    relative paths are relative to the cluster file's directory.
 *  - `raft`: heartbeatMs 10..10000, electionMs 50..120000 and at least
 *    5 × heartbeatMs (fewer heartbeats per election timeout and a single lost
 *    packet starts an election). Defaults 100 and 1000; when only one is
 *    given, the other follows it: electionMs = max(1000, 10 × heartbeatMs),
 *    heartbeatMs = min(100, max(10, electionMs / 10)).
 *  - `founders` (written by `cairn init`): the ids that may bootstrap the
 *    cluster together; non-empty, no duplicates. An id need not be in
 *    `nodes`: removing a founding node later is deleting its entry.
 *  - `allowShrink` (default false): lets one edit take a majority of the
 *    current voters out (see the hold rule in plan.ts); without it such an
 *    edit is held. It never allows a file with no voter.
 *  - `validators` (optional, at most VALIDATORS_MAX): HTTP validators the
 *    leader calls before it proposes a write with a matching tag (see
 *    src/api/validators.ts for the contract). `url` http(s), no credentials;
 *    `tags` non-empty ("*" matches every write, "kv" the key-value writes);
 *    `timeoutMs` 1..5000 (default 1000; at most half the 10 s write deadline,
 *    so a write is never proposed after its client was told it timed out);
 *    `onError` "reject" (default) or "accept"; `concurrencyMax` 1..1024 (default 64) calls in flight;
 *    `bodyBytesMax` 1 KiB..16 MiB (default 1 MiB) sent.
 *  - `discovery` (instead of `nodes`): `{"srv": "_cairn._tcp.NAME",
 *    "intervalMs"?, "server"?}`; the node list comes from DNS SRV + TXT
 *    records (src/discovery/srv.ts). A file has `nodes` or `discovery`.
 */
import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";

export const NODE_ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/i;
export const CLUSTER_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/i;
export const NODES_MAX = 64;
export const TLS_PATH_CHARS_MAX = 4096;
export const HEARTBEAT_MS_MIN = 10;
export const HEARTBEAT_MS_MAX = 10_000;
export const ELECTION_MS_MIN = 50;
export const ELECTION_MS_MAX = 120_000;
/** electionMs must be at least this many heartbeats. */
export const ELECTION_HEARTBEATS_MIN = 5;
export const RAFT_DEFAULTS = Object.freeze({ heartbeatMs: 100, electionMs: 1000 });

/** "witness": a voter that keeps no state machine (README "Witness"). */
export type NodeRole = "voter" | "learner" | "witness";

export const VALIDATORS_MAX = 16;
export const VALIDATOR_TAGS_MAX = 64;
export const VALIDATOR_TIMEOUT_MS_MAX = 5000;
export const VALIDATOR_CONCURRENCY_MAX = 1024;
export const VALIDATOR_BODY_BYTES_MIN = 1024;
export const VALIDATOR_BODY_BYTES_MAX = 16 << 20;
export const VALIDATOR_DEFAULTS = Object.freeze({ timeoutMs: 1000, onError: "reject" as const, concurrencyMax: 64, bodyBytesMax: 1 << 20 });
export const SRV_INTERVAL_MS_MIN = 100;
export const SRV_INTERVAL_MS_MAX = 3_600_000;
export const SRV_INTERVAL_MS_DEFAULT = 30_000;

export interface TlsPaths {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface RaftTiming {
  readonly heartbeatMs: number;
  readonly electionMs: number;
}

// ---------------------------------------------------------------- addresses

export type HostPort = { readonly host: string; readonly port: number };

/** Parses "host:port" ("[v6]:port" for IPv6). Returns a reason on failure. */
export function parseHostPort(s: string): { ok: true; value: HostPort } | { ok: false; reason: string } {
  const m = /^\[([^\]]*)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]*):(\d{1,5})$/.exec(s);
  if (!m) {
    if (/^[^[\]]*:.*:/.test(s)) return { ok: false, reason: 'an IPv6 address goes in brackets, such as "[fd00::1]:7400"' };
    return { ok: false, reason: 'expected "host:port" such as "10.0.0.1:7400"' };
  }
  const host = (m[1] ?? "").toLowerCase();
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return { ok: false, reason: `port ${m[2]} is not in 1..65535` };
  const bracketed = s.startsWith("[");
  if (bracketed ? !isIPv6(host) : !(isIPv4(host) || isDnsName(host))) {
    return { ok: false, reason: `host ${JSON.stringify(host)} is not an IPv4 address, a DNS name or a bracketed IPv6 address` };
  }
  if (isWildcard(host)) return { ok: false, reason: `host ${host} is a wildcard address that other nodes cannot dial` };
  return { ok: true, value: { host: canonicalHost(host), port } };
}

function isDnsName(h: string): boolean {
  if (h.length === 0 || h.length > 253 || /^[\d.]+$/.test(h)) return false;
  return h.split(".").every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l));
}

function isWildcard(h: string): boolean {
  return h === "0.0.0.0" || (isIPv6(h) && canonicalHost(h) === "::");
}

/**
 * A host in one spelling per address: lower case, IPv6 compressed the way
 * the WHATWG URL parser does it, IPv4-mapped IPv6 as plain IPv4.
 */
export function canonicalHost(host: string): string {
  let h = host.toLowerCase().replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!isIPv6(h)) return h;
  h = new URL(`http://[${h}]/`).hostname.replace(/^\[|\]$/g, "");
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
  if (mapped) {
    const hi = parseInt(mapped[1] ?? "0", 16);
    const lo = parseInt(mapped[2] ?? "0", 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return h;
}

/** Checks an API URL; returns it normalised (no trailing "/") and its host and port. */
export function parseApiUrl(s: string): { ok: true; url: string; hostPort: HostPort } | { ok: false; reason: string } {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return { ok: false, reason: 'expected an http:// or https:// URL such as "https://10.0.0.1:7401"' };
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    return { ok: false, reason: `scheme ${u.protocol.replace(/:$/, "")} is not http or https` };
  }
  if (u.username || u.password) return { ok: false, reason: "the URL must not contain credentials" };
  if (u.search || u.hash || s.includes("?") || s.includes("#")) {
    return { ok: false, reason: "the URL must not have a query or fragment" };
  }
  const host = canonicalHost(u.hostname);
  if (host === "" || isWildcard(host)) return { ok: false, reason: `host ${JSON.stringify(u.hostname)} cannot be dialled` };
  const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  return { ok: true, url: u.origin + u.pathname.replace(/\/+$/, ""), hostPort: { host, port } };
}

// ---------------------------------------------------------------- schema

function refineWith(parse: (s: string) => { ok: true } | { ok: false; reason: string }) {
  return (s: string, ctx: z.RefinementCtx) => {
    const r = parse(s);
    if (!r.ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: r.reason, params: { showValue: true } });
  };
}

const tlsPath = z
  .string()
  .min(1)
  .max(TLS_PATH_CHARS_MAX)
  .superRefine(
    refineWith((s) => {
      const bad = /\$\{(?!id\})[^}]*\}?/.exec(s);
      return bad ? { ok: false, reason: `unknown placeholder ${JSON.stringify(bad[0])}; only \${id} is replaced` } : { ok: true };
    }),
  );

/** Entries of "revoked" (node ids or certificate serials); a serial has at most 20 octets. */
export const REVOKED_MAX = 1024;
const REVOKED_CHARS_MAX = 128;

export const nodeSchema = z
  .object({
    id: z.string().regex(NODE_ID_RE),
    peer: z.string().superRefine(refineWith(parseHostPort)),
    api: z.string().superRefine(refineWith(parseApiUrl)),
    role: z.enum(["voter", "learner", "witness"]).optional(),
  })
  .strict();

function validatorUrlProblem(s: string): { ok: true } | { ok: false; reason: string } {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return { ok: false, reason: 'expected an http:// or https:// URL such as "http://127.0.0.1:9000/validate"' };
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return { ok: false, reason: `scheme ${u.protocol.replace(/:$/, "")} is not http or https` };
  if (u.username || u.password) return { ok: false, reason: "the URL must not contain credentials" };
  return { ok: true };
}

export const validatorSchema = z
  .object({
    url: z.string().max(2048).superRefine(refineWith(validatorUrlProblem)),
    tags: z.array(z.string().min(1).max(256)).min(1).max(VALIDATOR_TAGS_MAX),
    timeoutMs: z.number().int().min(1).max(VALIDATOR_TIMEOUT_MS_MAX).optional(),
    onError: z.enum(["reject", "accept"]).optional(),
    concurrencyMax: z.number().int().min(1).max(VALIDATOR_CONCURRENCY_MAX).optional(),
    bodyBytesMax: z.number().int().min(VALIDATOR_BODY_BYTES_MIN).max(VALIDATOR_BODY_BYTES_MAX).optional(),
  })
  .strict();

/** An SRV owner name such as "_cairn._tcp.store-42.example" (a DNS name whose labels may start with "_"). */
export const SRV_NAME_RE = /^(?=.{1,253}$)(_?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*_?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$/i;

export const discoverySchema = z
  .object({
    srv: z.string().regex(SRV_NAME_RE),
    intervalMs: z.number().int().min(SRV_INTERVAL_MS_MIN).max(SRV_INTERVAL_MS_MAX).optional(),
    // "host:port" or "host" (port 53) of the DNS server to ask; default: the system's resolvers.
    server: z.string().max(300).superRefine(refineWith((s) => (/:\d+$|^\[/.test(s) ? parseHostPort(s) : parseHostPort(`${s}:53`)))).optional(),
  })
  .strict();

export const clusterFileSchema = z
  .object({
    cluster: z.string().regex(CLUSTER_NAME_RE),
    nodes: z.array(nodeSchema).max(NODES_MAX).optional(),
    discovery: discoverySchema.optional(),
    validators: z.array(validatorSchema).max(VALIDATORS_MAX).optional(),
    tls: z.object({ ca: tlsPath, cert: tlsPath, key: tlsPath }).strict().optional(),
    raft: z
      .object({
        heartbeatMs: z.number().int().min(HEARTBEAT_MS_MIN).max(HEARTBEAT_MS_MAX).optional(),
        electionMs: z.number().int().min(ELECTION_MS_MIN).max(ELECTION_MS_MAX).optional(),
      })
      .strict()
      .optional(),
    founders: z.array(z.string().regex(NODE_ID_RE)).min(1).max(NODES_MAX).optional(),
    allowShrink: z.boolean().optional(),
    // Node ids or certificate serials (hex, ':' allowed) refused as peers even if members.
    revoked: z.array(z.string().min(1).max(REVOKED_CHARS_MAX)).max(REVOKED_MAX).optional(),
  })
  .strict();

/** The file as written, after the schema (before defaults and path resolution). */
export type ClusterFile = z.infer<typeof clusterFileSchema>;

export const KNOWN_KEYS: Readonly<Record<string, readonly string[]>> = {
  top: Object.keys(clusterFileSchema.shape),
  node: Object.keys(nodeSchema.shape),
  tls: ["ca", "cert", "key"],
  raft: ["heartbeatMs", "electionMs"],
  validators: Object.keys(validatorSchema.shape),
  discovery: Object.keys(discoverySchema.shape),
};

/** Fills in raft timing defaults as documented at the top of this file. */
export function raftTiming(raft: ClusterFile["raft"]): RaftTiming {
  const hb = raft?.heartbeatMs;
  const el = raft?.electionMs;
  if (hb === undefined && el === undefined) return { ...RAFT_DEFAULTS };
  if (el === undefined) return { heartbeatMs: hb!, electionMs: Math.max(RAFT_DEFAULTS.electionMs, 10 * hb!) };
  if (hb === undefined) {
    return { heartbeatMs: Math.min(RAFT_DEFAULTS.heartbeatMs, Math.max(HEARTBEAT_MS_MIN, Math.floor(el / 10))), electionMs: el };
  }
  return { heartbeatMs: hb, electionMs: el };
}

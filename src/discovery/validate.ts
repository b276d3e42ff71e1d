/**
 * Validation of a parsed cluster file: the zod schema, then the checks that
 * span fields (duplicates, founders, raft timing). Every problem is one line
 * of the form `<path>: <what is wrong>, got <value>`, e.g.
 * `nodes[2].id: duplicate id "n2" (also nodes[0])`.
 */
import type { z } from "zod";
import {
  type ClusterFile,
  clusterFileSchema,
  ELECTION_HEARTBEATS_MIN,
  ELECTION_MS_MAX,
  ELECTION_MS_MIN,
  HEARTBEAT_MS_MAX,
  HEARTBEAT_MS_MIN,
  KNOWN_KEYS,
  NODES_MAX,
  REVOKED_MAX,
  VALIDATORS_MAX,
  parseApiUrl,
  parseHostPort,
  raftTiming,
} from "./schema.ts";

export type ValidateResult = { ok: true; file: ClusterFile } | { ok: false; problems: string[] };

/** Validation problems are capped: past this many, the rest are counted only. */
export const PROBLEMS_MAX = 20;

export function validateClusterFile(raw: unknown): ValidateResult {
  const parsed = clusterFileSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => formatIssue(i, raw));
    // The node source is a cross-field rule, but a file missing both should hear it with the other problems.
    if (raw !== null && typeof raw === "object" && !("nodes" in raw) && !("discovery" in raw)) problems.push(...sourceProblems({} as ClusterFile));
    return { ok: false, problems: problems.slice(0, PROBLEMS_MAX) };
  }
  const problems = crossFieldProblems(parsed.data);
  return problems.length > 0 ? { ok: false, problems: problems.slice(0, PROBLEMS_MAX) } : { ok: true, file: parsed.data };
}

// ---------------------------------------------------------------- zod issues

const ID_HINT = 'an id of letters, digits, "_" and "-" that starts with a letter or digit, at most 63 characters, such as "n1"';
const TLS_HINT = "a file path (relative to the cluster file's directory; ${id} is replaced by the node id)";

/** What a field should be, by its key (for array elements: by the array's key + "[]"). */
const HINTS: Readonly<Record<string, string>> = {
  "": "a JSON object with keys cluster, nodes (or discovery) and optionally tls, raft, founders, allowShrink, validators",
  cluster: 'a cluster name of letters, digits, ".", "_" and "-", at most 63 characters, such as "store-42"',
  nodes: `an array of at most ${NODES_MAX} node entries (it may be empty)`,
  "nodes[]": 'an object with "id", "peer", "api" and optionally "role"',
  id: ID_HINT,
  peer: '"host:port" such as "10.0.0.1:7400"',
  api: 'an http:// or https:// URL such as "https://10.0.0.1:7401"',
  role: '"voter", "learner" or "witness"',
  tls: 'an object with "ca", "cert" and "key" file paths',
  ca: TLS_HINT,
  cert: TLS_HINT,
  key: TLS_HINT,
  raft: 'an object with optional "heartbeatMs" and "electionMs"',
  heartbeatMs: `a whole number of milliseconds from ${HEARTBEAT_MS_MIN} to ${HEARTBEAT_MS_MAX}`,
  electionMs: `a whole number of milliseconds from ${ELECTION_MS_MIN} to ${ELECTION_MS_MAX}`,
  founders: `a non-empty array of at most ${NODES_MAX} node ids`,
  "founders[]": ID_HINT,
  allowShrink: "true or false",
  revoked: `an array of at most ${REVOKED_MAX} node ids or certificate serial numbers (hex)`,
  "revoked[]": "a node id or a certificate serial number in hex",
  validators: `an array of at most ${VALIDATORS_MAX} validators {"url", "tags", "timeoutMs", "onError"}`,
  "validators[]": 'an object with "url", "tags" and optionally "timeoutMs", "onError", "concurrencyMax", "bodyBytesMax"',
  url: 'an http:// or https:// URL such as "http://127.0.0.1:9000/validate"',
  tags: 'a non-empty array of tags ("*" matches every write, "kv" the key-value writes)',
  "tags[]": "a non-empty tag of at most 256 characters",
  timeoutMs: "a whole number of milliseconds from 1 to 5000",
  onError: '"reject" or "accept"',
  concurrencyMax: "a whole number from 1 to 1024",
  bodyBytesMax: "a whole number of bytes from 1024 to 16777216",
  discovery: 'an object with "srv" and optionally "intervalMs" and "server"',
  srv: 'an SRV record name such as "_cairn._tcp.store-42.example"',
  intervalMs: "a whole number of milliseconds from 100 to 3600000",
  server: 'the DNS server to ask, "host:port" or "host", such as "10.0.0.53:53"',
};

export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? p : `.${p}`;
  return out;
}

function hintFor(path: readonly (string | number)[]): string {
  const last = path[path.length - 1];
  if (last === undefined) return HINTS[""] ?? "";
  if (typeof last === "number") return HINTS[`${String(path[path.length - 2])}[]`] ?? "a valid value";
  return HINTS[last] ?? "a valid value";
}

function valueAt(raw: unknown, path: readonly (string | number)[]): unknown {
  let v = raw;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}

/** A value for a message: JSON, cut short. */
export function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function knownKeysAt(path: readonly (string | number)[]): readonly string[] {
  if (path.length === 0) return KNOWN_KEYS.top ?? [];
  if (path[0] === "nodes") return KNOWN_KEYS.node ?? [];
  if (path[0] === "validators" && path.length > 1) return KNOWN_KEYS.validators ?? [];
  return KNOWN_KEYS[String(path[0])] ?? [];
}

export function formatIssue(issue: z.ZodIssue, raw: unknown): string {
  const where = formatPath(issue.path);
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => JSON.stringify(k)).join(", ");
    const at = where === "" ? "at the top level" : `in ${where}`;
    return `unknown key${issue.keys.length > 1 ? "s" : ""} ${keys} ${at}; known keys are ${knownKeysAt(issue.path).join(", ")}`;
  }
  const value = valueAt(raw, issue.path);
  const prefix = where === "" ? "the file" : where;
  if (issue.code === "custom") {
    const got = (issue.params as { showValue?: boolean } | undefined)?.showValue ? `, got ${show(value)}` : "";
    return `${prefix}: ${issue.message}${got}`;
  }
  if (value === undefined) return `${prefix}: missing; expected ${hintFor(issue.path)}`;
  if (issue.code === "too_big" && issue.type === "array") {
    return `${prefix}: has ${(value as unknown[]).length} entries, at most ${String(issue.maximum)} are allowed`;
  }
  return `${prefix}: expected ${hintFor(issue.path)}, got ${show(value)}`;
}

// ---------------------------------------------------------------- cross-field checks

function crossFieldProblems(file: ClusterFile): string[] {
  return [...sourceProblems(file), ...duplicateProblems(file), ...founderProblems(file), ...raftProblems(file)];
}

/** The node list comes from the file or from DNS, never both (which would win is a guess). */
function sourceProblems(file: ClusterFile): string[] {
  if (file.nodes !== undefined && file.discovery !== undefined) {
    return ['nodes: the file has both "nodes" and "discovery"; keep one: "nodes" lists the nodes, "discovery" takes them from DNS SRV records'];
  }
  if (file.nodes === undefined && file.discovery === undefined) {
    return [`nodes: missing; expected ${HINTS.nodes}, or "discovery": {"srv": "_cairn._tcp.NAME"}`];
  }
  return [];
}

/** Reports each value seen before, naming where it was first seen. */
class Seen {
  private readonly first = new Map<string, string>();
  /** Returns where `key` was first seen, or undefined (and records `where`). */
  check(key: string, where: string): string | undefined {
    const prev = this.first.get(key);
    if (prev === undefined) this.first.set(key, where);
    return prev;
  }
}

function duplicateProblems(file: ClusterFile): string[] {
  const out: string[] = [];
  const ids = new Seen();
  const peers = new Seen();
  const apis = new Seen();
  const endpoints = new Seen(); // host:port of peers and APIs together: each needs its own port
  (file.nodes ?? []).forEach((n, i) => {
    const at = `nodes[${i}]`;
    const idPrev = ids.check(n.id.toLowerCase(), at);
    if (idPrev) out.push(`${at}.id: duplicate id ${show(n.id)} (also ${idPrev}${idCase(file, idPrev, n.id)})`);
    const peer = parseHostPort(n.peer);
    const api = parseApiUrl(n.api);
    if (!peer.ok || !api.ok) return; // the schema has accepted both
    const peerKey = `${peer.value.host}:${peer.value.port}`;
    const peerPrev = peers.check(peerKey, at);
    if (peerPrev) out.push(`${at}.peer: duplicate peer address ${show(n.peer)} (also ${peerPrev})`);
    const apiPrev = apis.check(api.url, at);
    if (apiPrev) out.push(`${at}.api: duplicate API URL ${show(n.api)} (also ${apiPrev})`);
    const peerClash = peerPrev ? undefined : endpoints.check(peerKey, `${at}.peer`);
    if (peerClash) out.push(`${at}.peer: ${show(n.peer)} uses the same host and port as ${peerClash}; the API and the peer transport need separate ports`);
    const apiKey = `${api.hostPort.host}:${api.hostPort.port}`;
    const clash = apiPrev ? undefined : endpoints.check(apiKey, `${at}.api`);
    if (clash) out.push(`${at}.api: ${show(n.api)} uses the same host and port as ${clash}; the API and the peer transport need separate ports`);
  });
  return out;
}

function idCase(file: ClusterFile, prevAt: string, id: string): string {
  const i = Number(/\d+/.exec(prevAt)?.[0]);
  const prevId = file.nodes?.[i]?.id;
  return prevId !== undefined && prevId !== id ? ` ${show(prevId)}; ids are compared ignoring case` : "";
}

/**
 * Founders need not be ids in `nodes`: the list only matters while the
 * cluster is founded, and a cluster outlives it (removing a founding node is
 * deleting its entry, nothing more). Before founding, a founder the file does
 * not list is one that cannot be reached, so nobody founds: the safe side.
 */
function founderProblems(file: ClusterFile): string[] {
  if (!file.founders) return [];
  const out: string[] = [];
  const seen = new Seen();
  file.founders.forEach((f, i) => {
    const prev = seen.check(f, `founders[${i}]`);
    if (prev) out.push(`founders[${i}]: duplicate ${show(f)} (also ${prev})`);
  });
  return out;
}

function raftProblems(file: ClusterFile): string[] {
  const t = raftTiming(file.raft);
  if (t.electionMs >= ELECTION_HEARTBEATS_MIN * t.heartbeatMs) return [];
  return [
    `raft.electionMs: ${t.electionMs} is less than ${ELECTION_HEARTBEATS_MIN} × heartbeatMs (${t.heartbeatMs}); ` +
      `a few lost heartbeats would start an election, so use at least ${ELECTION_HEARTBEATS_MIN * t.heartbeatMs} or a shorter heartbeatMs`,
  ];
}

/**
 * The handshake: the first frame each way is a hello {v, cluster, from, to}.
 * The connecting side sends first; the accepting side checks it and answers
 * with its own hello, or with a refusal {v, refused} and closes. Only after
 * the hellos are frames payloads.
 *
 * Cluster IDs: null means "not known yet" (a node that has not joined). A
 * null on either side is accepted and reported; two different non-null IDs
 * are refused. The Raft core checks the ID on every message as well.
 */
import type { LogFields } from "../util/log.ts";
import type { Admission, PeerIdentity } from "./context.ts";

export const PROTOCOL_VERSION = 1;
const ID_CHARS_MAX = 256;

export interface Hello {
  readonly v: typeof PROTOCOL_VERSION;
  readonly cluster: string | null;
  readonly from: string;
  readonly to: string;
}

export interface Refusal {
  readonly v: typeof PROTOCOL_VERSION;
  readonly refused: string;
  /** Set when refused by the admission rule: what the rule attached (see AdmissionRefusal.info). */
  readonly info?: unknown;
}

/** A handshake that failed: bad hello, wrong cluster, wrong node, certificate mismatch. */
export class HandshakeError extends Error {
  override name = "HandshakeError";
  constructor(readonly reason: string, readonly fields: LogFields = {}) {
    super(reason);
  }
}

function isId(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= ID_CHARS_MAX;
}

/** A peer the admission rule does not admit (not a member, revoked). */
export class NotAdmittedError extends HandshakeError {
  override name = "NotAdmittedError";
  constructor(
    reason: string,
    readonly kind: string,
    readonly info: unknown,
    fields: LogFields,
  ) {
    super(reason, fields);
  }
}

/** Throws NotAdmittedError if `admit` refuses `peer`. */
export function checkAdmission(admit: Admission, peer: PeerIdentity): void {
  const r = admit(peer);
  if (r !== null) throw new NotAdmittedError(r.reason, r.kind, r.info, { peer: peer.id, serial: peer.serial, refusal: r.kind });
}

/** Parses the first frame of a connection. Throws HandshakeError. */
export function parseHello(value: unknown): Hello | Refusal {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HandshakeError("first frame is not a hello object");
  }
  const o = value as Record<string, unknown>;
  if (o.v !== PROTOCOL_VERSION) {
    throw new HandshakeError(`hello has protocol version ${JSON.stringify(o.v)}, this node speaks ${PROTOCOL_VERSION}: run the same cairn version on every node`);
  }
  if (typeof o.refused === "string") {
    const refused = o.refused.slice(0, 1000);
    return o.info === undefined ? { v: PROTOCOL_VERSION, refused } : { v: PROTOCOL_VERSION, refused, info: o.info };
  }
  if (!isId(o.from) || !isId(o.to) || !(o.cluster === null || isId(o.cluster))) {
    throw new HandshakeError("hello lacks string fields from/to or a string-or-null cluster");
  }
  return { v: PROTOCOL_VERSION, cluster: o.cluster, from: o.from, to: o.to };
}

export interface HelloExpectation {
  readonly self: string;
  readonly cluster: string | null;
  /** The node id we dialled (outbound), if any. */
  readonly from?: string;
  /** TLS only: the CN of the peer's verified certificate, null when it has none (or several). Absent without TLS. */
  readonly certName?: string | null;
}

/** Checks a hello against what this node expects. Throws HandshakeError naming what did not match. */
export function checkHello(h: Hello, want: HelloExpectation): void {
  if (h.from === want.self) {
    throw new HandshakeError(`peer claims to be this node (${h.from}): two nodes share an id, or a node dialled itself`, { peer: h.from });
  }
  if (h.to !== want.self) {
    throw new HandshakeError(`hello from ${h.from} is addressed to node ${h.to}, but this is node ${want.self}: the peer's cluster file has a wrong address`, { peer: h.from, to: h.to });
  }
  if (h.cluster !== null && want.cluster !== null && h.cluster !== want.cluster) {
    throw new HandshakeError(
      `cluster ID mismatch: peer ${h.from} is in cluster ${h.cluster}, this node is in cluster ${want.cluster}; a node from another cluster (or with old data) is refused`,
      { peer: h.from, theirs: h.cluster, ours: want.cluster },
    );
  }
  if (want.from !== undefined && h.from !== want.from) {
    throw new HandshakeError(`dialled node ${want.from} but node ${h.from} answered: check the peer addresses in the cluster file`, { peer: want.from, answered: h.from });
  }
  if (want.certName !== undefined && want.certName !== h.from) {
    const cert = want.certName === null ? "has no single common name" : `is for node ${want.certName}`;
    throw new HandshakeError(`peer says it is node ${h.from} but its certificate ${cert}: give each node its own certificate with CN = node id`, { peer: h.from, certName: want.certName });
  }
}

/** What the transport's parts (outbound peers, inbound connections) share. */
import type { Socket } from "node:net";
import type { Logger } from "../util/log.ts";
import type { FaultHook } from "./faults.ts";
import type { LogLimiter } from "./limiter.ts";

/** PEM strings: the cluster CA, this node's certificate (CN = node id) and its PKCS#8 key. */
export interface PeerTls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export type DropPolicy = "newest" | "oldest";

export interface Limits {
  readonly frameBytesMax: number;
  readonly queueLengthMax: number;
  readonly queueBytesMax: number;
  readonly dropPolicy: DropPolicy;
  readonly backoffMsMin: number;
  readonly backoffMsMax: number;
  /** TCP connect + TLS handshake + hello exchange, either direction. */
  readonly connectTimeoutMs: number;
  /** A connection whose writes make no progress this long is closed and redialled. */
  readonly writeStallMs: number;
  readonly keepAliveMs: number;
  /** Each side of an open connection sends a keepalive frame when it has sent nothing for this long. */
  readonly pingMs: number;
  /**
   * Read deadline: an open connection on which nothing (not even a keepalive) arrived for this long
   * is dead (a cut, a stopped peer, TCP stuck in retransmission backoff) and is closed; the dialling
   * side redials. About one election timeout.
   */
  readonly idleMs: number;
  readonly inboundConnectionsMax: number;
  readonly logIntervalMs: number;
}

export interface Counters {
  sent: number;
  dropped: number;
  received: number;
  connectionErrors: number;
  inboundRefused: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface PeerHelloInfo {
  readonly from: string;
  readonly cluster: string | null;
  readonly direction: "inbound" | "outbound";
  readonly address: string;
}

/** Who a peer is: the id it proved (CN of its certificate) or, without TLS, claimed; its certificate serial (hex) if any. */
export interface PeerIdentity {
  readonly id: string;
  readonly serial: string | null;
}

/** Why a peer is not admitted. `kind` names the reason in metrics ("notMember", "revoked"). */
export interface AdmissionRefusal {
  readonly kind: string;
  readonly reason: string;
  /** Plain data sent to the refused peer with the refusal (e.g. what proves to it that it was removed). */
  readonly info?: unknown;
}

/** The node's rule for who may connect, either direction: null admits. Must not throw. */
export type Admission = (peer: PeerIdentity) => AdmissionRefusal | null;

/** A peer this node dialled refused it, with the reason and whatever `info` its admission rule attached. */
export interface RefusedByInfo {
  readonly peer: string;
  readonly reason: string;
  readonly info: unknown;
}

export interface TransportContext {
  readonly nodeId: string;
  clusterId(): string | null;
  readonly tls: PeerTls | "insecure";
  readonly limits: Limits;
  readonly log: Logger;
  readonly limiter: LogLimiter;
  readonly counters: Counters;
  /** Registers a socket so that close() destroys it and waits for it. */
  track(socket: Socket): void;
  onPeerHello(info: PeerHelloInfo): void;
  admit: Admission;
  /** Peers refused (either direction, at the handshake or on a re-check) by the admission rule, per kind. */
  readonly refusedByKind: Record<string, number>;
  onRefusedBy(info: RefusedByInfo): void;
  /** Test-only network faults (CAIRN_TEST_FAULTS); undefined in production. */
  readonly faults: FaultHook | undefined;
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" && !e.message.includes(code) ? `${e.message} (${code})` : e.message;
  }
  return String(e);
}

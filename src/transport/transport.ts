/**
 * The peer transport: mutual TLS (or, with "insecure", plain TCP) between
 * cairn nodes, carrying length-prefixed CBOR frames.
 *
 * Shape: each node dials one outbound connection per peer and sends only on
 * it; it receives on the connections its peers dialled. So between two nodes
 * there are two connections, one per direction, and nobody has to break ties.
 *
 * - send() never blocks: it encodes the payload, appends it to the peer's
 *   bounded queue (or drops it) and returns. A slow or dead peer fills only
 *   its own queue.
 * - Every connection starts with a hello each way (see hello.ts): the cluster
 *   ID must match (null = not known yet is accepted and reported), the hello
 *   must be addressed to this node, and with TLS the certificate's CN must be
 *   the node id the peer claims. The TLS layer itself only admits peers with
 *   a certificate signed by the cluster CA; the node's admission rule (`admit`)
 *   then decides whether that id (and certificate serial) may take part, at
 *   every handshake either way and, through recheckPeers(), for connections
 *   already open.
 * - A bad peer (garbage, an oversized frame, a bad hello, a certificate from
 *   another CA) loses its connection with one log line; the server keeps
 *   serving everyone else.
 *
 * Payloads are whatever plain data the node sends ({t: "raft", m: Message},
 * snapshot chunks...). They arrive unvalidated: onMessage must check shape.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { rawSocketOf, remoteAddressOf } from "../platform/net.ts";
import type { Logger } from "../util/log.ts";
import { parsePeerAddress, type PeerAddress } from "./address.ts";
import {
  errorMessage,
  type Admission,
  type Counters,
  type DropPolicy,
  type Limits,
  type PeerHelloInfo,
  type PeerTls,
  type RefusedByInfo,
  type TransportContext,
} from "./context.ts";
import { FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, FrameTooLargeError, checkFrameBytesMax, encodeFrame } from "./frame.ts";
import type { FaultHook } from "./faults.ts";
import { InboundConn } from "./inbound.ts";
import { LogLimiter } from "./limiter.ts";
import { OutboundPeer } from "./outbound.ts";

export type { Admission, AdmissionRefusal, DropPolicy, PeerHelloInfo, PeerIdentity, PeerTls, RefusedByInfo } from "./context.ts";
export { BadPeerAddressError, parsePeerAddress } from "./address.ts";

export interface PeerTransportOptions<P> {
  readonly nodeId: string;
  /** null: not known yet; hellos from any cluster are accepted and reported through onPeerHello. */
  readonly clusterId: string | null;
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls: PeerTls | "insecure";
  readonly logger: Logger;
  /** Called for every payload from a peer, in order per connection. Must not throw. */
  readonly onMessage: (from: string, payload: P) => void;
  /** Called after each successful handshake with what the peer announced. */
  readonly onPeerHello?: (info: PeerHelloInfo) => void;
  /**
   * Who may connect, checked at every handshake (inbound and outbound) and
   * again for open connections by recheckPeers(). Default: every peer with a
   * certificate of the cluster CA (or, insecure, any peer).
   */
  readonly admit?: Admission;
  /** A peer this node dialled refused it and attached info (see AdmissionRefusal.info). Must not throw. */
  readonly onRefusedBy?: (info: RefusedByInfo) => void;
  readonly frameBytesMax?: number;
  readonly queueLengthMax?: number;
  readonly queueBytesMax?: number;
  readonly dropPolicy?: DropPolicy;
  readonly backoffMsMin?: number;
  readonly backoffMsMax?: number;
  readonly connectTimeoutMs?: number;
  readonly writeStallMs?: number;
  readonly keepAliveMs?: number;
  readonly pingMs?: number;
  readonly idleMs?: number;
  readonly inboundConnectionsMax?: number;
  readonly logIntervalMs?: number;
  /** Test-only network faults (see faults.ts); the transport closes it. */
  readonly faults?: FaultHook;
}

/**
 * Liveness timings for a cluster whose Raft heartbeat is `heartbeatMs` and election timeout
 * `electionMs` (the cluster file's raft section): a dead connection is noticed within about one
 * election timeout, and a redial never waits much longer than one.
 */
export function transportTimings(raft: { readonly heartbeatMs: number; readonly electionMs: number }): Partial<PeerTransportOptions<unknown>> {
  return {
    pingMs: raft.heartbeatMs,
    idleMs: raft.electionMs,
    // A dial lost in a cut (the kernel's SYN retransmission backs off from 1 s) is abandoned after
    // half an election timeout and redone at once (a timed-out dial does not grow the backoff), so
    // after a heal a fresh dial starts within about half an election timeout.
    connectTimeoutMs: Math.max(250, Math.floor(raft.electionMs / 2)),
    backoffMsMax: Math.max(TRANSPORT_DEFAULTS.backoffMsMin, Math.floor(raft.electionMs / 2)),
    backoffMsMin: Math.min(TRANSPORT_DEFAULTS.backoffMsMin, Math.floor(raft.electionMs / 2)),
    writeStallMs: 2 * raft.electionMs,
  };
}

export interface PeerMetrics {
  readonly address: string;
  readonly connected: boolean;
  readonly queueLength: number;
  readonly queueBytes: number;
  readonly sent: number;
  readonly dropped: number;
  readonly connectionErrors: number;
}

export interface TransportMetrics extends Readonly<Counters> {
  readonly inboundConnections: number;
  /** Peers refused by the admission rule, per kind ("notMember", "revoked"). */
  readonly refusedByKind: Readonly<Record<string, number>>;
  readonly peers: Readonly<Record<string, PeerMetrics>>;
}

/** Limits a peer transport uses unless told otherwise. */
export const TRANSPORT_DEFAULTS: Limits = Object.freeze({
  frameBytesMax: FRAME_BYTES_MAX_DEFAULT,
  queueLengthMax: 1024,
  queueBytesMax: 64 * 1024 * 1024,
  dropPolicy: "newest",
  backoffMsMin: 100,
  backoffMsMax: 5000,
  connectTimeoutMs: 5000,
  writeStallMs: 15_000,
  keepAliveMs: 10_000,
  // A Raft node passes transportTimings() of its cluster file instead.
  pingMs: 100,
  idleMs: 1000,
  inboundConnectionsMax: 256,
  logIntervalMs: 10_000,
});

/** Log lines of one kind allowed per logIntervalMs before they are suppressed and counted. */
const LOG_BURST = 5;
/** Bounds the closing wait: a runtime that never reports a destroyed socket closed must not hang close(). */
const CLOSE_WAIT_MS = 5000;

function secureContextOf(t: PeerTls): { ca: string; cert: string; key: string } {
  return { ca: t.ca, cert: t.cert, key: t.key };
}

function resolveLimits<P>(o: PeerTransportOptions<P>): Limits {
  const d = TRANSPORT_DEFAULTS;
  const limits: Limits = {
    frameBytesMax: o.frameBytesMax ?? d.frameBytesMax,
    queueLengthMax: o.queueLengthMax ?? d.queueLengthMax,
    queueBytesMax: o.queueBytesMax ?? Math.max(d.queueBytesMax, (o.frameBytesMax ?? 0) + FRAME_HEADER_BYTES),
    dropPolicy: o.dropPolicy ?? d.dropPolicy,
    backoffMsMin: o.backoffMsMin ?? d.backoffMsMin,
    backoffMsMax: o.backoffMsMax ?? d.backoffMsMax,
    connectTimeoutMs: o.connectTimeoutMs ?? d.connectTimeoutMs,
    writeStallMs: o.writeStallMs ?? d.writeStallMs,
    keepAliveMs: o.keepAliveMs ?? d.keepAliveMs,
    pingMs: o.pingMs ?? d.pingMs,
    idleMs: o.idleMs ?? d.idleMs,
    inboundConnectionsMax: o.inboundConnectionsMax ?? d.inboundConnectionsMax,
    logIntervalMs: o.logIntervalMs ?? d.logIntervalMs,
  };
  checkFrameBytesMax(limits.frameBytesMax);
  for (const [name, v] of Object.entries(limits)) {
    if (typeof v === "number" && !(Number.isInteger(v) && v >= 1)) {
      throw new RangeError(`peer transport option ${name} = ${v} is invalid: use a whole number of at least 1`);
    }
  }
  if (limits.backoffMsMin > limits.backoffMsMax) {
    throw new RangeError(`backoffMsMin ${limits.backoffMsMin} exceeds backoffMsMax ${limits.backoffMsMax}: make the minimum the smaller`);
  }
  if (limits.idleMs < 2 * limits.pingMs) {
    throw new RangeError(`idleMs ${limits.idleMs} is under 2 × pingMs ${limits.pingMs}: one late keepalive would drop the connection; raise idleMs`);
  }
  if (limits.queueBytesMax < limits.frameBytesMax + FRAME_HEADER_BYTES) {
    throw new RangeError(`queueBytesMax ${limits.queueBytesMax} cannot hold one frame of frameBytesMax ${limits.frameBytesMax}: raise queueBytesMax`);
  }
  return limits;
}

export class PeerTransport<P = unknown> {
  private readonly ctx: TransportContext;
  private readonly log: Logger;
  private readonly counters: Counters = { sent: 0, dropped: 0, received: 0, connectionErrors: 0, inboundRefused: 0, bytesSent: 0, bytesReceived: 0 };
  private cluster: string | null;
  private server: net.Server | undefined;
  private readonly peers = new Map<string, OutboundPeer>();
  /** Sockets the server accepted, before and after TLS, until they close; with their handshake deadline. */
  private readonly accepted = new Map<net.Socket, ReturnType<typeof setTimeout> | undefined>();
  private readonly inbound = new Set<InboundConn>();
  /** Every socket this transport made or accepted, with a promise of its "close" event. */
  private readonly sockets = new Map<net.Socket, Promise<void>>();
  private closing: Promise<void> | undefined;
  private listenAt: { readonly host: string; readonly port: number };
  /** The TLS material for connections made from now on (updateTls replaces it). */
  private tlsNow: PeerTls | "insecure";

  constructor(private readonly opts: PeerTransportOptions<P>) {
    const limits = resolveLimits(opts);
    this.cluster = opts.clusterId;
    this.listenAt = opts.listen;
    this.tlsNow = opts.tls;
    this.log = opts.logger.with({ component: "transport" });
    const limiter = new LogLimiter({ intervalMs: limits.logIntervalMs, burst: LOG_BURST, keysMax: 4096 });
    const self = this;
    this.ctx = {
      nodeId: opts.nodeId,
      clusterId: () => this.cluster,
      // A getter: outbound dials read the pair in force when they connect.
      get tls() {
        return self.tlsNow;
      },
      limits,
      log: this.log,
      limiter,
      counters: this.counters,
      track: (s) => this.track(s),
      onPeerHello: (info) => this.onPeerHello(info),
      admit: opts.admit ?? (() => null),
      refusedByKind: {},
      onRefusedBy: (info) => opts.onRefusedBy?.(info),
      faults: opts.faults,
    };
  }

  /** Starts accepting peers. Resolves to the bound port (useful with port 0). */
  async listen(): Promise<number> {
    if (this.server !== undefined || this.closing !== undefined) throw new Error("PeerTransport.listen() called twice or after close()");
    const server = this.createServer();
    this.server = server;
    try {
      return await this.bind(server, this.listenAt);
    } catch (e) {
      this.server = undefined; // listen() may be retried
      throw e;
    }
  }

  /**
   * Moves the listener to another address (this node's entry in the cluster
   * file changed): listens there first, then stops accepting on the old one.
   * Connections already made stay until their peers re-dial the new address.
   * If the new address cannot be bound, throws and keeps the old listener.
   */
  async moveListener(at: { readonly host: string; readonly port: number }): Promise<number> {
    if (this.closing !== undefined || this.server === undefined) throw new Error("PeerTransport.moveListener() before listen() or after close()");
    const server = this.createServer();
    const port = await this.bind(server, at);
    const old = this.server;
    this.server = server;
    this.listenAt = at;
    if (this.closing !== undefined) server.close();
    old.close();
    return port;
  }

  /**
   * Uses `next` for every connection made from now on, both ways: the
   * listener's secure context is replaced (inbound handshakes present the new
   * certificate) and outbound dials read it when they connect. Open
   * connections keep the pair they were made with. The caller checks the
   * pair first (src/transport/pair.ts): a bad one would break new handshakes.
   */
  updateTls(next: PeerTls): void {
    if (this.tlsNow === "insecure") throw new Error("PeerTransport.updateTls() on a transport without TLS (--insecure)");
    this.tlsNow = next;
    (this.server as tls.Server | undefined)?.setSecureContext(secureContextOf(next));
    this.log.info("TLS certificate replaced: new peer connections use it");
  }

  private async bind(server: net.Server, at: { readonly host: string; readonly port: number }): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        // The system code stays on the error: the CLI tells a port in use as an expected failure, with a hint.
        const code = (e as { code?: unknown }).code;
        reject(Object.assign(new Error(`cannot listen for peers on ${at.host}:${at.port}: ${errorMessage(e)}`), { code }));
      };
      server.once("error", onError);
      server.listen(at.port, at.host, () => {
        server.off("error", onError);
        resolve();
      });
    });
    server.on("error", (e) => this.log.error("peer listener error", { error: errorMessage(e) }));
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : at.port;
    this.log.info("listening for peers", { host: at.host, port, tls: this.tlsNow !== "insecure" });
    return port;
  }

  private createServer(): net.Server {
    const material = this.tlsNow;
    if (material === "insecure") {
      this.log.warn("peer transport is NOT encrypted or authenticated (--insecure): use only for development");
      const server = net.createServer();
      server.on("connection", (socket) => {
        if (this.accept(socket)) this.startInbound(socket, socket);
      });
      return server;
    }
    const server = tls.createServer({
      ...secureContextOf(material),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
      // No handshakeTimeout: accept() already bounds handshake + hello with connectTimeoutMs, and the
      // runtimes' own timeout would only add a second log line (it does not even close the socket).
    });
    server.on("connection", (raw: net.Socket) => this.accept(raw));
    server.on("secureConnection", (socket: tls.TLSSocket) => this.onSecureConnection(socket));
    server.on("tlsClientError", (e: Error, socket: tls.TLSSocket) => this.onTlsClientError(e, socket));
    return server;
  }

  /** Admits a freshly accepted socket (before TLS) under the connection limit and the handshake deadline. */
  private accept(raw: net.Socket): boolean {
    const address = remoteAddressOf(raw);
    if (this.closing !== undefined) {
      raw.destroy();
      return false;
    }
    if (this.accepted.size >= this.ctx.limits.inboundConnectionsMax) {
      this.counters.inboundRefused++;
      this.logRefused("tooMany", `refused peer connection: already ${this.accepted.size} inbound connections (inboundConnectionsMax)`, { address });
      raw.destroy();
      return false;
    }
    this.track(raw);
    const ms = this.ctx.limits.connectTimeoutMs;
    const timer = setTimeout(() => {
      this.counters.inboundRefused++;
      this.logRefused("timeout", `refused peer connection: no TLS handshake and hello within ${ms} ms`, { address });
      raw.destroy();
    }, ms);
    this.accepted.set(raw, timer);
    raw.on("close", () => {
      clearTimeout(this.accepted.get(raw));
      this.accepted.delete(raw);
    });
    return true;
  }

  private onSecureConnection(socket: tls.TLSSocket): void {
    // Bun gave this very socket to "connection"; Deno gave its parent (see src/platform/net.ts).
    const raw = this.accepted.has(socket) ? socket : rawSocketOf(socket);
    if (!this.accepted.has(raw) || this.closing !== undefined) {
      socket.destroy();
      return;
    }
    // rejectUnauthorized already refused unverified clients; this guards against a runtime that does not.
    if (!socket.authorized) {
      this.counters.inboundRefused++;
      this.logRefused("tls", "refused peer connection: client certificate not verified by the cluster CA", {
        address: remoteAddressOf(socket),
        error: String(socket.authorizationError),
      });
      socket.destroy();
      raw.destroy();
      return;
    }
    this.startInbound(socket, raw);
  }

  private onTlsClientError(e: Error, socket: tls.TLSSocket): void {
    this.counters.inboundRefused++;
    this.logRefused("tls", "refused peer connection: TLS handshake failed (no client certificate, one not signed by the cluster CA, or a timeout)", {
      address: remoteAddressOf(socket),
      error: errorMessage(e),
    });
    // Neither Bun nor Deno destroys the socket after a failed handshake (Node does).
    socket.destroy();
    rawSocketOf(socket).destroy();
  }

  private startInbound(socket: net.Socket, raw: net.Socket): void {
    if (socket !== raw) this.track(socket);
    const conn = new InboundConn(this.ctx, socket, remoteAddressOf(socket), {
      opened: (c) => {
        clearTimeout(this.accepted.get(raw));
        this.accepted.set(raw, undefined);
        this.onInboundOpened(c);
      },
      closed: (c) => {
        this.inbound.delete(c);
        raw.destroy();
      },
      message: (from, payload) => this.opts.onMessage(from, payload as P),
    });
    this.inbound.add(conn);
  }

  /** The newest connection from a peer wins: an older one is a leftover (half-open, or the peer redialled). */
  private onInboundOpened(conn: InboundConn): void {
    for (const other of this.inbound) {
      if (other !== conn && other.isOpen && other.peerId === conn.peerId) other.close("replaced by a newer connection from the same peer");
    }
    // The peer reached us: our own dial to it need not wait out its backoff.
    if (conn.peerId !== undefined) this.peers.get(conn.peerId)?.kick();
  }

  private logRefused(kind: string, msg: string, fields: Record<string, unknown>): void {
    const suppressed = this.ctx.limiter.take(`inbound:${kind}`);
    if (suppressed !== undefined) this.log.warn(msg, { ...fields, kind, suppressedLines: suppressed });
  }

  private onPeerHello(info: PeerHelloInfo): void {
    if (this.cluster === null && info.cluster !== null) {
      this.log.info("peer announced a cluster ID; this node does not know its own yet", { peer: info.from, theirCluster: info.cluster, direction: info.direction });
    }
    this.opts.onPeerHello?.(info);
  }

  private track(socket: net.Socket): void {
    if (this.sockets.has(socket)) return;
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    this.sockets.set(socket, closed);
    void closed.then(() => this.sockets.delete(socket));
  }

  /**
   * Sets the peers' addresses ("host:port"), replacing the previous set. A new
   * peer is dialled on its first send(); a changed address closes the old
   * connection and dials the new one at once; a removed peer's queue is
   * dropped and its connections (both directions) are closed. This node's own
   * id is ignored. Throws BadPeerAddressError (and changes nothing) if any
   * address does not parse.
   */
  setPeers(peers: ReadonlyMap<string, string>): void {
    const parsed = new Map<string, PeerAddress>();
    for (const [id, text] of peers) {
      if (id !== this.opts.nodeId) parsed.set(id, parsePeerAddress(text));
    }
    if (this.closing !== undefined) return;
    for (const [id, peer] of this.peers) {
      if (parsed.has(id)) continue;
      this.log.info("peer removed; closing its connections", { peer: id, address: peer.address.text, droppedQueued: peer.queueLength });
      peer.close();
      this.peers.delete(id);
      for (const conn of this.inbound) if (conn.peerId === id) conn.close("peer removed from the cluster file");
    }
    for (const [id, address] of parsed) {
      const peer = this.peers.get(id);
      if (peer === undefined) this.peers.set(id, new OutboundPeer(this.ctx, id, address));
      else peer.retarget(address);
    }
  }

  /** The admitted set changed (membership, cluster file, revocations): connections of peers no longer admitted close at once. */
  recheckPeers(): void {
    if (this.closing !== undefined) return;
    for (const conn of [...this.inbound]) conn.recheck();
    for (const peer of this.peers.values()) peer.recheck();
  }

  /** This node learned its cluster ID: connections from peers that announced another one are closed. */
  setClusterId(id: string): void {
    if (this.cluster === id) return;
    if (this.cluster !== null) this.log.warn("cluster ID changed", { from: this.cluster, to: id });
    this.cluster = id;
    for (const peer of this.peers.values()) peer.checkCluster(id);
    for (const conn of this.inbound) {
      if (conn.remoteCluster !== null && conn.remoteCluster !== id) {
        this.log.warn("closing peer connection: cluster ID mismatch", { peer: conn.peerId, address: conn.address, theirs: conn.remoteCluster, ours: id });
        conn.close("cluster ID mismatch");
      }
    }
  }

  /**
   * Queues `payload` for peer `to` and returns at once: true if queued, false
   * if dropped (unknown peer, queue full under dropPolicy "newest", frame over
   * frameBytesMax, transport closed). Delivery is best effort either way.
   */
  send(to: string, payload: P): boolean {
    const peer = this.peers.get(to);
    if (peer === undefined || this.closing !== undefined) {
      this.counters.dropped++;
      const suppressed = this.ctx.limiter.take(`unknown:${to}`);
      if (suppressed !== undefined && this.closing === undefined) {
        this.log.warn("dropping message: no address for peer (not in the cluster file?)", { peer: to, suppressedLines: suppressed });
      }
      return false;
    }
    let frame: Uint8Array;
    try {
      frame = encodeFrame(payload, this.ctx.limits.frameBytesMax);
    } catch (e) {
      if (!(e instanceof FrameTooLargeError)) throw e;
      this.counters.dropped++;
      peer.counters.dropped++;
      this.log.error("dropping message: larger than frameBytesMax", { peer: to, frameBytes: e.frameBytes, frameBytesMax: e.frameBytesMax });
      return false;
    }
    return peer.enqueue(frame);
  }

  metrics(): TransportMetrics {
    const peers: Record<string, PeerMetrics> = {};
    for (const [id, p] of this.peers) {
      peers[id] = { address: p.address.text, connected: p.connected, queueLength: p.queueLength, queueBytes: p.queueBytes, ...p.counters };
    }
    return { ...this.counters, inboundConnections: this.accepted.size, refusedByKind: { ...this.ctx.refusedByKind }, peers };
  }

  /** Stops the server and closes every connection; resolves when all sockets have closed. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const server = this.server;
    const serverClosed = server === undefined ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
    for (const peer of this.peers.values()) peer.close();
    for (const conn of this.inbound) conn.close("transport closing");
    for (const [raw, timer] of this.accepted) {
      clearTimeout(timer);
      raw.destroy();
    }
    for (const socket of this.sockets.keys()) socket.destroy();
    this.opts.faults?.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), CLOSE_WAIT_MS);
    });
    const result = await Promise.race([Promise.all([serverClosed, ...this.sockets.values()]), timeout]);
    clearTimeout(timer);
    if (result === "timeout") {
      this.log.warn("peer transport closed, but some sockets did not report closing in time", { sockets: this.sockets.size });
    }
    this.log.info("peer transport closed", { ...this.counters });
  }
}

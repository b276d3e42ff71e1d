/**
 * One accepted connection: reads the peer's hello, checks it (addressed to
 * this node, compatible cluster ID, certificate CN = claimed node id), answers
 * with this node's hello, then hands every further frame to the transport.
 *
 * Anything wrong (garbage bytes, an oversized frame, a bad hello) closes this
 * connection only, with one log line naming the peer address and the reason.
 *
 * Liveness: once open, this side sends a keepalive every pingMs (it sends
 * nothing else) so that the dialling side can tell a live connection from a
 * dead one, and closes the connection when nothing arrived for idleMs.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { peerCommonName, peerSerialNumber } from "../platform/net.ts";
import { errorMessage, type TransportContext } from "./context.ts";
import type { FaultLane } from "./faults.ts";
import { BadFrameError, FrameDecoder, FrameTooLargeError, KEEPALIVE, KEEPALIVE_FRAME, encodeFrame } from "./frame.ts";
import { HandshakeError, NotAdmittedError, PROTOCOL_VERSION, checkAdmission, checkHello, parseHello, type Hello, type Refusal } from "./hello.ts";

/** How long a refused peer gets to read the refusal before the socket is destroyed. */
const REFUSAL_LINGER_MS = 1000;

export interface InboundEvents {
  /** The hello checked out: the connection now carries payloads from `conn.peerId`. */
  opened(conn: InboundConn): void;
  closed(conn: InboundConn): void;
  message(from: string, payload: unknown): void;
}

export class InboundConn {
  peerId: string | undefined;
  remoteCluster: string | null = null;
  /** The serial of the peer's certificate (hex), null without TLS. */
  serial: string | null = null;
  private open = false;
  /** A refusal is being sent: read nothing more, close soon. */
  private refusing = false;
  private done = false;
  private readonly decoder: FrameDecoder;
  private liveTimer: ReturnType<typeof setInterval> | undefined;
  private lastReadMs = 0;
  private lastCheckMs = 0;
  private readonly lane: FaultLane | undefined;

  constructor(
    private readonly ctx: TransportContext,
    private readonly socket: Socket,
    readonly address: string,
    private readonly events: InboundEvents,
  ) {
    this.decoder = new FrameDecoder({ frameBytesMax: ctx.limits.frameBytesMax });
    this.lane = ctx.faults?.lane();
    socket.setNoDelay(true);
    socket.setKeepAlive(true, ctx.limits.keepAliveMs);
    socket.on("data", (chunk: Uint8Array) => this.onData(chunk));
    socket.on("error", (e) => {
      if (!this.done) ctx.log.debug("peer connection error", { address, peer: this.peerId, error: errorMessage(e) });
    });
    socket.on("close", () => this.finish());
  }

  get isOpen(): boolean {
    return this.open && !this.done;
  }

  /** Closes the connection without blaming the peer (shutdown, peer removed, replaced). */
  close(reason: string): void {
    if (this.done) return;
    this.ctx.log.debug("closing inbound peer connection", { address: this.address, peer: this.peerId, reason });
    this.socket.destroy();
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearInterval(this.liveTimer);
    this.lane?.close();
    this.socket.destroy();
    this.events.closed(this);
  }

  private onData(chunk: Uint8Array): void {
    if (this.done || this.refusing) return;
    this.ctx.counters.bytesReceived += chunk.byteLength;
    const frames = this.decoder.feed(chunk);
    for (;;) {
      let next: IteratorResult<unknown, void>;
      try {
        next = frames.next();
      } catch (e) {
        this.refuse(e);
        return;
      }
      if (next.done || this.done || this.refusing) return;
      const value = next.value;
      if (this.lane === undefined) this.onFrame(value);
      else this.lane.receive(this.peerId ?? helloSender(value), () => this.onFrame(value));
    }
  }

  private onFrame(value: unknown): void {
    if (this.done || this.refusing) return;
    this.lastReadMs = performance.now();
    if (!this.open) {
      this.onHello(value);
      return;
    }
    if (value === KEEPALIVE) return;
    this.ctx.counters.received++;
    // Not caught: a throwing handler is a bug in the node, not the peer's fault.
    this.events.message(this.peerId ?? "", value);
  }

  /** Every pingMs / 2: the read deadline, and a keepalive each pingMs. */
  private checkLive(): void {
    if (this.done) return;
    const now = performance.now();
    const { idleMs } = this.ctx.limits;
    // After a stall of this node's own event loop, what the peer sent meanwhile is not read yet: look next time.
    const stalled = now - this.lastCheckMs > idleMs / 2;
    this.lastCheckMs = now;
    if (now - this.lastReadMs >= idleMs && !stalled) {
      const quietMs = Math.round(now - this.lastReadMs);
      this.ctx.log.info("closing peer connection: nothing received for the read deadline", { address: this.address, peer: this.peerId, quietMs, idleMs });
      this.close(`nothing received for ${quietMs} ms`);
      return;
    }
    this.pingDue = !this.pingDue;
    if (this.pingDue) this.socket.write(KEEPALIVE_FRAME);
  }

  private pingDue = false;

  /** Returns whether the connection is open now. */
  private onHello(value: unknown): boolean {
    let hello: Hello | Refusal;
    try {
      hello = parseHello(value);
      if ("refused" in hello) throw new HandshakeError("peer sent a refusal instead of a hello");
      const certName = this.ctx.tls === "insecure" ? undefined : (peerCommonName(this.socket as TLSSocket) ?? null);
      checkHello(hello, { self: this.ctx.nodeId, cluster: this.ctx.clusterId(), certName });
      this.serial = this.ctx.tls === "insecure" ? null : (peerSerialNumber(this.socket as TLSSocket) ?? null);
      // Without TLS the id is only claimed: the same rule applies, but it proves nothing.
      checkAdmission(this.ctx.admit, { id: hello.from, serial: this.serial });
    } catch (e) {
      this.refuse(e);
      return false;
    }
    this.peerId = hello.from;
    this.remoteCluster = hello.cluster;
    const reply: Hello = { v: PROTOCOL_VERSION, cluster: this.ctx.clusterId(), from: this.ctx.nodeId, to: hello.from };
    this.socket.write(encodeFrame(reply, this.ctx.limits.frameBytesMax));
    this.open = true;
    this.lastReadMs = this.lastCheckMs = performance.now();
    this.liveTimer = setInterval(() => this.checkLive(), Math.max(1, Math.floor(this.ctx.limits.pingMs / 2)));
    this.ctx.log.debug("accepted peer connection", { address: this.address, peer: hello.from, theirCluster: hello.cluster });
    this.ctx.onPeerHello({ from: hello.from, cluster: hello.cluster, direction: "inbound", address: this.address });
    this.events.opened(this);
    return true;
  }

  /** Closes an open connection at once if its peer is no longer admitted (the admitted set changed). */
  recheck(): void {
    if (!this.isOpen || this.peerId === undefined) return;
    try {
      checkAdmission(this.ctx.admit, { id: this.peerId, serial: this.serial });
    } catch (e) {
      this.refuse(e);
    }
  }

  /** Closes this connection because of the peer, with one log line (rate-limited per kind of fault). */
  refuse(e: unknown): void {
    if (this.done || this.refusing) return;
    this.ctx.counters.inboundRefused++;
    const kind = e instanceof FrameTooLargeError ? "frameTooLarge" : e instanceof BadFrameError ? "badFrame" : e instanceof NotAdmittedError ? "notAdmitted" : "handshake";
    if (e instanceof NotAdmittedError) this.ctx.refusedByKind[e.kind] = (this.ctx.refusedByKind[e.kind] ?? 0) + 1;
    // Per peer for refused identities: one non-member's retries must not hide another's.
    const suppressed = this.ctx.limiter.take(e instanceof NotAdmittedError ? `inbound:${kind}:${String(e.fields.peer)}:${e.kind}` : `inbound:${kind}`);
    if (suppressed !== undefined) {
      const fields = e instanceof HandshakeError ? e.fields : {};
      const what = this.open ? "closed peer connection" : "refused peer connection";
      this.ctx.log.warn(`${what}: ${errorMessage(e)}`, { address: this.address, peer: this.peerId, kind, ...fields, suppressedLines: suppressed });
    }
    if (e instanceof HandshakeError && (!this.open || e instanceof NotAdmittedError)) {
      // Tell the peer why, so both logs explain the refusal; then give it a moment to read it.
      const info = e instanceof NotAdmittedError ? e.info : undefined;
      const refusal: Refusal = info === undefined ? { v: PROTOCOL_VERSION, refused: e.reason } : { v: PROTOCOL_VERSION, refused: e.reason, info };
      this.refusing = true;
      this.socket.end(encodeFrame(refusal, this.ctx.limits.frameBytesMax));
      setTimeout(() => this.finish(), REFUSAL_LINGER_MS).unref?.();
      return;
    }
    this.finish();
  }
}

/** The claimed sender of a hello (for the test fault hook, before the hello is checked). */
function helloSender(value: unknown): string {
  const from = typeof value === "object" && value !== null ? (value as { from?: unknown }).from : undefined;
  return typeof from === "string" ? from : "";
}

/**
 * One outbound peer: a bounded queue of encoded frames and at most one
 * connection, opened lazily on the first frame, redialled with capped
 * exponential backoff (with jitter) while frames wait.
 *
 * Invariants:
 *  - `conn` is the only live connection; handlers of an older connection see
 *    `this.conn !== conn` and do nothing.
 *  - Frames leave the queue only when handed to an open connection's socket,
 *    and only while the socket accepts them (write() returned true), so a slow
 *    peer holds at most one write batch beyond the queue's limits.
 *  - Nothing here blocks: enqueue() only appends, drops, or schedules.
 *  - Liveness: an open connection sends a keepalive when it has been quiet for
 *    pingMs and expects the peer's keepalives back; nothing received for
 *    idleMs means the connection is dead (a cut, a stopped peer, TCP stuck in
 *    retransmission backoff), so it is dropped and redialled at once instead of
 *    waiting for TCP to notice. The backoff is capped by backoffMsMax (about an
 *    election timeout), reset by a successful hello, and cut short when the
 *    peer dials this node (it is evidently reachable again).
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { peerCommonName, peerSerialNumber } from "../platform/net.ts";
import { assert } from "../util/assert.ts";
import type { PeerAddress } from "./address.ts";
import { errorMessage, type TransportContext } from "./context.ts";
import type { FaultLane } from "./faults.ts";
import { FrameDecoder, KEEPALIVE, KEEPALIVE_FRAME, encodeFrame } from "./frame.ts";
import { HandshakeError, NotAdmittedError, PROTOCOL_VERSION, checkAdmission, checkHello, parseHello, type Hello } from "./hello.ts";
import { FrameQueue } from "./queue.ts";

/** Frames are coalesced into writes of about this size (one frame may be larger). */
const WRITE_BATCH_BYTES = 256 * 1024;

type State = "idle" | "connecting" | "open" | "backoff" | "closed";

interface Conn {
  readonly socket: net.Socket;
  readonly decoder: FrameDecoder;
  readonly connectTimer: ReturnType<typeof setTimeout>;
  stallTimer: ReturnType<typeof setTimeout> | undefined;
  /** Keepalive and read deadline of an open connection. */
  liveTimer: ReturnType<typeof setInterval> | undefined;
  lastReadMs: number;
  lastWriteMs: number;
  lastCheckMs: number;
  readonly dialMs: number;
  readonly lane: FaultLane | undefined;
  open: boolean;
  waitingDrain: boolean;
  remoteCluster: string | null;
  lastError: string | undefined;
  /** Set once the peer's identity passed the admission rule: its certificate serial (null without TLS). */
  admitted: { serial: string | null } | undefined;
}

export interface PeerCounters {
  sent: number;
  dropped: number;
  connectionErrors: number;
}

export class OutboundPeer {
  readonly counters: PeerCounters = { sent: 0, dropped: 0, connectionErrors: 0 };
  private readonly queue = new FrameQueue();
  private conn: Conn | undefined;
  private state: State = "idle";
  private backoffMs: number;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private flushScheduled = false;
  private failures = 0;

  constructor(
    private readonly ctx: TransportContext,
    readonly id: string,
    private addr: PeerAddress,
  ) {
    this.backoffMs = ctx.limits.backoffMsMin;
  }

  get address(): PeerAddress {
    return this.addr;
  }
  get connected(): boolean {
    return this.state === "open";
  }
  get queueLength(): number {
    return this.queue.length;
  }
  get queueBytes(): number {
    return this.queue.bytes;
  }

  /** Queues one encoded frame. Returns false when this frame was dropped. */
  enqueue(frame: Uint8Array): boolean {
    if (this.state === "closed") return false;
    const { queueLengthMax, queueBytesMax, dropPolicy } = this.ctx.limits;
    const fits = (): boolean => this.queue.length < queueLengthMax && this.queue.bytes + frame.byteLength <= queueBytesMax;
    if (!fits()) {
      if (dropPolicy === "newest") {
        this.dropped(1, "queue full, dropping the newest message");
        return false;
      }
      let n = 0;
      while (this.queue.length > 0 && !fits()) {
        this.queue.shift();
        n++;
      }
      if (n > 0) this.dropped(n, "queue full, dropping the oldest messages");
      // Only a frame larger than queueBytesMax can still not fit; the transport refuses those up front.
      assert(fits(), () => `frame of ${frame.byteLength} bytes cannot fit queueBytesMax ${queueBytesMax}`);
    }
    this.queue.push(frame);
    if (this.state === "idle") this.connect();
    else if (this.state === "open") this.scheduleFlush();
    return true;
  }

  /** Uses `addr` from now on: the current connection (if any) closes and a new one is dialled at once. */
  retarget(addr: PeerAddress): void {
    if (addr.text === this.addr.text || this.state === "closed") return;
    this.ctx.log.info("peer address changed; reconnecting", { peer: this.id, from: this.addr.text, to: addr.text });
    this.addr = addr;
    this.disconnect();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.backoffMs = this.ctx.limits.backoffMsMin;
    this.state = "idle";
    if (this.queue.length > 0) this.connect();
  }

  /** Closes the connection if the peer announced a cluster other than `clusterId`. */
  checkCluster(clusterId: string): void {
    const remote = this.conn?.remoteCluster ?? null;
    if (remote === null || remote === clusterId) return;
    this.ctx.log.warn("closing peer connection: cluster ID mismatch", { peer: this.id, theirs: remote, ours: clusterId });
    this.lost(this.conn, `cluster ID mismatch: peer ${this.id} is in cluster ${remote}, this node is in cluster ${clusterId}`);
  }

  /** Closes the connection at once if the peer is no longer admitted (the admitted set changed). */
  recheck(): void {
    const conn = this.conn;
    if (conn?.admitted !== undefined) this.admits(conn, conn.admitted.serial);
  }

  /** Whether the admission rule admits this peer; if not, the connection is lost with the reason. */
  private admits(conn: Conn, serial: string | null): boolean {
    try {
      checkAdmission(this.ctx.admit, { id: this.id, serial });
      return true;
    } catch (e) {
      if (!(e instanceof NotAdmittedError)) throw e;
      this.ctx.refusedByKind[e.kind] = (this.ctx.refusedByKind[e.kind] ?? 0) + 1;
      // What waits for it is not for a non-member: dropped, so it is not redialled until something new is sent.
      const n = this.queue.clear();
      this.counters.dropped += n;
      this.ctx.counters.dropped += n;
      this.lost(conn, `this node does not admit peer ${this.id}${serial === null ? "" : ` (certificate serial ${serial})`}: ${e.reason}`);
      return false;
    }
  }

  /** For good: drops what is queued (counted as dropped) and closes the connection. */
  close(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.retryTimer);
    this.disconnect();
    const n = this.queue.clear();
    this.counters.dropped += n;
    this.ctx.counters.dropped += n;
  }

  private dropped(n: number, reason: string): void {
    this.counters.dropped += n;
    this.ctx.counters.dropped += n;
    const suppressed = this.ctx.limiter.take(`drop:${this.id}`);
    if (suppressed === undefined) return;
    this.ctx.log.warn(`peer ${this.id}: ${reason}`, {
      peer: this.id,
      address: this.addr.text,
      connected: this.connected,
      queueLength: this.queue.length,
      queueBytes: this.queue.bytes,
      droppedTotal: this.counters.dropped,
      suppressedLines: suppressed,
    });
  }

  private connect(): void {
    assert(this.conn === undefined && (this.state === "idle" || this.state === "backoff"), () => `connect() in state ${this.state}`);
    this.state = "connecting";
    const socket = this.dial();
    this.ctx.track(socket);
    const ms = this.ctx.limits.connectTimeoutMs;
    const conn: Conn = {
      socket,
      decoder: new FrameDecoder({ frameBytesMax: this.ctx.limits.frameBytesMax }),
      connectTimer: setTimeout(() => this.timedOut(conn, ms), ms),
      stallTimer: undefined,
      liveTimer: undefined,
      lastReadMs: 0,
      lastWriteMs: 0,
      lastCheckMs: 0,
      dialMs: performance.now(),
      lane: this.ctx.faults?.lane(),
      open: false,
      waitingDrain: false,
      remoteCluster: null,
      lastError: undefined,
      admitted: undefined,
    };
    this.conn = conn;
    socket.once(this.ctx.tls === "insecure" ? "connect" : "secureConnect", () => this.onConnected(conn));
    socket.on("data", (chunk: Uint8Array) => this.onData(conn, chunk));
    socket.on("error", (e) => {
      conn.lastError = errorMessage(e);
    });
    socket.on("close", () => {
      const why = conn.lastError ?? (conn.open ? "closed by the peer" : "closed by the peer during the handshake (its log says why)");
      this.lost(conn, why);
    });
  }

  private dial(): net.Socket {
    const { host, port } = this.addr;
    if (this.ctx.tls === "insecure") return net.connect({ host, port });
    const { ca, cert, key } = this.ctx.tls;
    return tls.connect({
      host,
      port,
      ca,
      cert,
      key,
      minVersion: "TLSv1.3",
      // The peer's identity is its node id (certificate CN), checked in onConnected. Host names are
      // not checked: addresses in the cluster file change (NAT, renumbering) without new certificates.
      checkServerIdentity: () => undefined,
    });
  }

  private onConnected(conn: Conn): void {
    if (this.conn !== conn) return;
    const { socket } = conn;
    if (this.ctx.tls !== "insecure") {
      const cn = peerCommonName(socket as tls.TLSSocket);
      if (cn !== this.id) {
        this.lost(conn, `dialled node ${this.id} at ${this.addr.text} but its certificate is for ${cn ?? "(no common name)"}: check the peer addresses in the cluster file`);
        return;
      }
    }
    const serial = this.ctx.tls === "insecure" ? null : (peerSerialNumber(socket as tls.TLSSocket) ?? null);
    if (!this.admits(conn, serial)) return;
    conn.admitted = { serial };
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.ctx.limits.keepAliveMs);
    const hello: Hello = { v: PROTOCOL_VERSION, cluster: this.ctx.clusterId(), from: this.ctx.nodeId, to: this.id };
    socket.write(encodeFrame(hello, this.ctx.limits.frameBytesMax));
  }

  private onData(conn: Conn, chunk: Uint8Array): void {
    if (this.conn !== conn) return;
    this.ctx.counters.bytesReceived += chunk.byteLength;
    try {
      for (const value of conn.decoder.feed(chunk)) {
        if (conn.lane === undefined) this.onFrame(conn, value);
        else conn.lane.receive(this.id, () => this.onFrame(conn, value));
      }
    } catch (e) {
      this.lost(conn, errorMessage(e));
    }
  }

  /** The accepting side sends its hello, then only keepalives. */
  private onFrame(conn: Conn, value: unknown): void {
    if (this.conn !== conn) return;
    conn.lastReadMs = performance.now();
    try {
      // A refusal may also come later, when the peer stops admitting this node.
      const refusal = typeof value === "object" && value !== null && "refused" in value;
      if (conn.open && !refusal) {
        if (value === KEEPALIVE) return;
        throw new HandshakeError("peer sent a frame other than a keepalive or a refusal after its hello on a connection this node opened");
      }
      const hello = parseHello(value);
      if ("refused" in hello) {
        if (hello.info !== undefined) this.ctx.onRefusedBy({ peer: this.id, reason: hello.refused, info: hello.info });
        throw new HandshakeError(`peer refused the connection: ${hello.refused}`);
      }
      checkHello(hello, { self: this.ctx.nodeId, cluster: this.ctx.clusterId(), from: this.id });
      this.opened(conn, hello);
    } catch (e) {
      this.lost(conn, errorMessage(e));
    }
  }

  /** Every pingMs: a keepalive if nothing was written lately; the read deadline. */
  private checkLive(conn: Conn): void {
    if (this.conn !== conn) return;
    const now = performance.now();
    const { pingMs, idleMs } = this.ctx.limits;
    // After a stall of this node's own event loop, what the peer sent meanwhile is not read yet: look next time.
    const stalled = now - conn.lastCheckMs > idleMs / 2;
    conn.lastCheckMs = now;
    if (now - conn.lastReadMs >= idleMs && !stalled) {
      this.lost(conn, `nothing received from the peer for ${Math.round(now - conn.lastReadMs)} ms (idleMs ${idleMs}, keepalives included): the connection is dead`);
      return;
    }
    if (now - conn.lastWriteMs >= pingMs && !conn.waitingDrain) {
      conn.lastWriteMs = now;
      if (!conn.socket.write(KEEPALIVE_FRAME)) this.awaitDrain(conn);
    }
  }

  /**
   * The peer dialled this node: it is reachable, so a redial waiting out its backoff (or a dial that
   * may be stuck in SYN retransmission) starts over now.
   */
  kick(): void {
    if (this.state === "backoff") {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    } else if (this.state === "connecting" && this.conn !== undefined && performance.now() - this.conn.dialMs > this.ctx.limits.connectTimeoutMs / 2) {
      // Only an old dial: a young one is likely just racing the peer's own dial (restarting it would loop).
      this.disconnect();
    } else {
      return;
    }
    this.backoffMs = this.ctx.limits.backoffMsMin;
    this.state = "idle";
    if (this.queue.length > 0) this.connect();
  }

  private opened(conn: Conn, hello: Hello): void {
    clearTimeout(conn.connectTimer);
    conn.open = true;
    conn.remoteCluster = hello.cluster;
    this.state = "open";
    this.backoffMs = this.ctx.limits.backoffMsMin;
    conn.lastReadMs = conn.lastWriteMs = conn.lastCheckMs = performance.now();
    const pingMs = this.ctx.limits.pingMs;
    conn.liveTimer = setInterval(() => this.checkLive(conn), Math.max(1, Math.floor(pingMs / 2)));
    this.ctx.log.info("connected to peer", { peer: this.id, address: this.addr.text, failedAttempts: this.failures, theirCluster: hello.cluster });
    this.failures = 0;
    this.ctx.onPeerHello({ from: hello.from, cluster: hello.cluster, direction: "outbound", address: this.addr.text });
    this.scheduleFlush();
  }

  /**
   * A dial that got no connection and hello in time (SYNs dropped by a cut or by loss): the wait
   * itself spaced the attempts, so the redial comes after the shortest backoff, not a grown one; a
   * heal is then noticed within about one connect timeout.
   */
  private timedOut(conn: Conn, ms: number): void {
    if (this.conn !== conn) return;
    this.backoffMs = this.ctx.limits.backoffMsMin;
    this.lost(conn, `no connection and hello within ${ms} ms`);
  }

  /** Ends `conn` after a failure: counted, logged at a rate limit, redialled after a backoff. */
  private lost(conn: Conn | undefined, reason: string): void {
    if (conn === undefined || this.conn !== conn) return;
    const wasOpen = conn.open;
    this.disconnect();
    if (this.state === "closed") return;
    this.failures++;
    this.counters.connectionErrors++;
    this.ctx.counters.connectionErrors++;
    const suppressed = this.ctx.limiter.take(`conn:${this.id}`);
    if (suppressed !== undefined) {
      const msg = wasOpen ? "lost connection to peer" : "could not connect to peer";
      this.ctx.log.warn(msg, { peer: this.id, address: this.addr.text, reason, failedAttempts: this.failures, retryMs: this.backoffMs, queueLength: this.queue.length, suppressedLines: suppressed });
    }
    this.scheduleRetry();
  }

  /** Drops the current connection without counting it as a failure. */
  private disconnect(): void {
    const conn = this.conn;
    if (conn === undefined) return;
    this.conn = undefined;
    clearTimeout(conn.connectTimer);
    clearTimeout(conn.stallTimer);
    clearInterval(conn.liveTimer);
    conn.lane?.close();
    conn.socket.destroy();
    if (this.state === "open" || this.state === "connecting") this.state = "idle";
  }

  private scheduleRetry(): void {
    this.state = "backoff";
    // Full jitter over the upper half: peers that failed together do not redial in lockstep.
    const delayMs = this.backoffMs / 2 + Math.random() * (this.backoffMs / 2);
    this.backoffMs = Math.min(this.backoffMs * 2, this.ctx.limits.backoffMsMax);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state !== "backoff") return;
      this.state = "idle";
      if (this.queue.length > 0) this.connect();
    }, delayMs);
  }

  /** Flushes in a microtask so that the frames of one burst of send() calls share writes. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const conn = this.conn;
    if (conn === undefined || !conn.open || conn.waitingDrain) return;
    while (this.queue.length > 0) {
      const { batch, frames } = this.takeBatch();
      this.counters.sent += frames;
      this.ctx.counters.sent += frames;
      this.ctx.counters.bytesSent += batch.byteLength;
      conn.lastWriteMs = performance.now();
      if (!conn.socket.write(batch)) {
        this.awaitDrain(conn);
        return;
      }
    }
  }

  private awaitDrain(conn: Conn): void {
    conn.waitingDrain = true;
    const ms = this.ctx.limits.writeStallMs;
    conn.stallTimer = setTimeout(() => this.lost(conn, `peer is not reading: writes made no progress for ${ms} ms`), ms);
    conn.socket.once("drain", () => {
      clearTimeout(conn.stallTimer);
      conn.waitingDrain = false;
      if (this.conn === conn) this.flush();
    });
  }

  private takeBatch(): { batch: Uint8Array; frames: number } {
    const first = this.queue.shift();
    assert(first !== undefined, "takeBatch on an empty queue");
    const parts = [first];
    let bytes = first.byteLength;
    for (let next = this.queue.peek(); next !== undefined && bytes + next.byteLength <= WRITE_BATCH_BYTES; next = this.queue.peek()) {
      this.queue.shift();
      parts.push(next);
      bytes += next.byteLength;
    }
    if (parts.length === 1) return { batch: first, frames: 1 };
    const batch = new Uint8Array(bytes);
    let at = 0;
    for (const p of parts) {
      batch.set(p, at);
      at += p.byteLength;
    }
    return { batch, frames: parts.length };
  }
}

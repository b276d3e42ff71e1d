/**
 * What nodes send each other over the peer transport besides Raft messages:
 * forwarded writes and transfer requests (a follower asks the leader), and
 * the founding probe (is this node empty?). Every request has an id and an
 * answer; the asker keeps a bounded table of open requests with deadlines.
 */
import type { SnapPayload } from "../checkpoint/transfer.ts";
import type { Message } from "../raft/index.ts";
import { InvalidCommandError } from "../statemachine/commands.ts";
import { DiskFullError, NodeError, TimeoutError } from "./errors.ts";

export type PeerPayload =
  | { readonly t: "raft"; readonly m: Message }
  | { readonly t: "fwd"; readonly id: number; readonly cmd: Uint8Array; readonly wait: "applied" | "accepted" }
  | { readonly t: "xfer"; readonly id: number; readonly to: string | null }
  | { readonly t: "probe"; readonly id: number }
  | { readonly t: "resp"; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly t: "resp"; readonly id: number; readonly ok: false; readonly error: WireError }
  | SnapPayload;

/** An error as it crosses to the node that asked: its code (the API's error.code) and message; the asker's API picks the status. */
export interface WireError {
  readonly code: string;
  readonly message: string;
}

/** A NodeError that came back from another node (its code is the one the other node's error had). */
export class RemoteError extends NodeError {
  override name = "RemoteError";
  constructor(e: WireError) {
    super(typeof e.code === "string" ? e.code : "internal", typeof e.message === "string" ? e.message : "the peer's error had no message");
  }
}

export function toWireError(err: unknown): WireError {
  if (err instanceof NodeError) return { code: err.code, message: err.message };
  if (err instanceof DiskFullError) return { code: "disk_full", message: err.message };
  const e = err instanceof Error ? err : new Error(String(err));
  if (e instanceof InvalidCommandError) return { code: e.tooLarge ? "too_large" : "invalid", message: e.message };
  return { code: "internal", message: e.message };
}

/** Open requests to peers, settled by their answers or by a deadline. */
export class PeerCalls {
  /**
   * Ids start at a random point, so each process numbers its requests in its own
   * range: an answer meant for this node's previous process (queued by the peer
   * while this node was down, delivered after its restart) must not settle a new
   * request that happens to have the same id (a forwarded write would get another
   * write's outcome).
   */
  private seq = randomIdStart();
  private readonly open = new Map<number, { to: string; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>();

  constructor(private readonly sizeMax: number) {}

  /** Sends to `to` with `send(id)`; resolves with the answer's value. */
  call(to: string, what: string, timeoutMs: number, send: (id: number) => boolean): Promise<unknown> {
    if (this.open.size >= this.sizeMax) return Promise.reject(new TimeoutError(`${what} (too many requests to peers in flight)`, 0));
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.open.delete(id);
        reject(new TimeoutError(what, timeoutMs));
      }, timeoutMs);
      this.open.set(id, { to, resolve, reject, timer });
      if (!send(id)) {
        clearTimeout(timer);
        this.open.delete(id);
        reject(new TimeoutError(`${what} (the peer's send queue is full)`, 0));
      }
    });
  }

  /** Settles the request `p` answers, if `from` is the peer it was sent to (another peer cannot answer for it). */
  answer(from: string, p: Extract<PeerPayload, { t: "resp" }>): void {
    const c = this.open.get(p.id);
    if (!c || c.to !== from) return; // timed out already, or not this peer's to answer
    this.open.delete(p.id);
    clearTimeout(c.timer);
    if (p.ok) c.resolve(p.value);
    else c.reject(new RemoteError(p.error));
  }

  /** Fails the open requests to `to` (e.g. a former leader, after a leader change). */
  failTo(to: string, err: Error): void {
    for (const [id, c] of this.open) {
      if (c.to !== to) continue;
      this.open.delete(id);
      clearTimeout(c.timer);
      c.reject(err);
    }
  }

  failAll(err: Error): void {
    for (const c of this.open.values()) {
      clearTimeout(c.timer);
      c.reject(err);
    }
    this.open.clear();
  }
}

/** A random whole number below 2^52 (ids stay safe integers for 2^52 more requests). */
function randomIdStart(): number {
  const w = crypto.getRandomValues(new Uint32Array(2));
  return (w[0]! % 2 ** 20) * 2 ** 32 + w[1]!;
}

/** Checks a payload's shape before it is trusted (the transport only checks it is CBOR). */
export function isPeerPayload(p: unknown): p is PeerPayload {
  if (typeof p !== "object" || p === null) return false;
  const t = (p as { t?: unknown }).t;
  switch (t) {
    case "raft":
      return typeof (p as { m?: unknown }).m === "object" && (p as { m?: unknown }).m !== null;
    case "fwd":
    case "xfer":
    case "probe":
    case "resp":
      return typeof (p as { id?: unknown }).id === "number";
    case "snapOffer":
    case "snapAck":
    case "snapChunk":
    case "snapDone":
      return typeof (p as { xfer?: unknown }).xfer === "string";
    default:
      return false;
  }
}

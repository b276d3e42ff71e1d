/**
 * Streaming a checkpoint to a follower that fell behind the compacted log,
 * over the peer transport: an offer, then checksummed chunks within a window
 * of unacknowledged bytes (never the whole file in memory), acknowledged by
 * offset. The receiver keeps the partial file under a name derived from the
 * checkpoint's SHA-256, so a transfer cut by a dropped connection or a
 * restart resumes where it stopped. The whole file is verified before
 * anything is replaced.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Message } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";
import { sha256File } from "./build.ts";
import { OFFER_HOLD_MS } from "./checkpointer.ts";
import type { Manifest } from "./manifest.ts";

export type SnapPayload =
  | { readonly t: "snapOffer"; readonly xfer: string; readonly manifest: Manifest; readonly msg: Message }
  /**
   * The receiver has every byte below `offset`. Acks are cumulative; with
   * `resend` the sender must go back to `offset` (the answer to an offer, a
   * refused chunk, a gap).
   */
  | { readonly t: "snapAck"; readonly xfer: string; readonly offset: number; readonly resend?: boolean }
  | { readonly t: "snapChunk"; readonly xfer: string; readonly offset: number; readonly data: Uint8Array; readonly sha256: string }
  | { readonly t: "snapDone"; readonly xfer: string; readonly ok: boolean; readonly reason: string };

/**
 * bytesPerSec: a checkpoint streamed at full speed takes the leader's thread
 * and the disks from the writes it serves (bench/checkpoint.ts: p99 3.7x idle
 * unlimited, 1.3x at 48-64 MiB/s); 64 MiB/s is still more than a 1 Gbit/s link.
 */
export const TRANSFER_DEFAULTS = { chunkBytes: 1 << 20, windowChunks: 4, stallMs: 15_000, retransmitMs: 2000, bytesPerSec: 64 << 20 };

/** The receiver flushes its partial file every this many bytes. */
const SYNC_EVERY_BYTES = 4 << 20;

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Sends one checkpoint to one peer. */
export class SnapshotSender {
  private acked = 0;
  private next = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private quietTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pumpPending = false;
  private sentBytes = 0;
  private answered = false;
  private done = false;
  private readonly fd: number;
  readonly startedAt = performance.now();

  constructor(
    private readonly o: {
      xfer: string;
      to: string;
      manifest: Manifest;
      path: string;
      msg: Message;
      send: (p: SnapPayload) => boolean;
      onDone: (ok: boolean, reason: string) => void;
      chunkBytes?: number;
      windowChunks?: number;
      stallMs?: number;
      /**
       * With no answer for this long, send the offer (never answered) or the
       * unacknowledged chunks again: frames dropped with a connection are
       * replaced, and a receiver that restarted says it has no such transfer.
       */
      retransmitMs?: number;
      /** Rate limit of the chunks sent (0: none). */
      bytesPerSec?: number;
      /** Test hook: alters a chunk before it is sent. */
      tamper?: (offset: number, data: Uint8Array) => Uint8Array;
    },
  ) {
    this.fd = openSync(o.path, "r");
  }

  start(): void {
    this.arm();
    this.armQuiet();
    this.o.send({ t: "snapOffer", xfer: this.o.xfer, manifest: this.o.manifest, msg: this.o.msg });
  }

  /** An answer from the receiver; answers about another transfer (an older one) are ignored. */
  onPayload(p: SnapPayload): void {
    if (p.xfer !== this.o.xfer) return;
    if (p.t === "snapAck") this.onAck(p.offset, p.resend === true);
    else if (p.t === "snapDone") this.onDone(p.ok, p.ok ? "" : p.reason || "the receiver refused it");
  }

  onAck(offset: number, resend = false): void {
    if (this.done || !Number.isSafeInteger(offset) || offset < 0 || offset > this.o.manifest.bytes) return;
    this.arm();
    this.armQuiet();
    this.answered = true;
    // Acks are cumulative: an ack behind what was sent is normal (chunks in
    // flight) and must not cause a resend. Only an explicit request (the
    // answer to the offer, a refused chunk) moves `next`, in either direction.
    this.acked = Math.max(this.acked, offset);
    if (resend) {
      this.acked = offset;
      this.next = offset;
    } else if (offset > this.next) this.next = offset;
    this.pump();
  }

  onDone(ok: boolean, reason: string): void {
    this.finish(ok, reason);
  }

  cancel(reason: string): void {
    this.finish(false, reason);
  }

  /**
   * Sends the next chunk if the window and the rate allow, then yields to
   * the event loop before the next one: reading, hashing and encoding a chunk
   * takes the Raft loop's thread, so chunks go one per macrotask, never a
   * whole window in one go.
   */
  private pump(): void {
    if (this.done || this.pumpPending) return;
    if (!this.windowOpen()) return;
    const wait = this.rateWaitMs();
    if (wait > 0) return this.pumpLater(wait);
    if (!this.sendChunk()) return;
    if (this.windowOpen()) this.pumpLater(0);
  }

  private windowOpen(): boolean {
    const chunk = this.o.chunkBytes ?? TRANSFER_DEFAULTS.chunkBytes;
    const window = chunk * (this.o.windowChunks ?? TRANSFER_DEFAULTS.windowChunks);
    return this.next < this.o.manifest.bytes && this.next - this.acked < window;
  }

  /** How long to wait before the next chunk to stay under bytesPerSec. */
  private rateWaitMs(): number {
    const rate = this.o.bytesPerSec ?? TRANSFER_DEFAULTS.bytesPerSec;
    if (rate <= 0) return 0;
    return Math.ceil((this.sentBytes / rate) * 1000 - (performance.now() - this.startedAt));
  }

  private pumpLater(ms: number): void {
    this.pumpPending = true;
    const go = () => {
      this.pumpPending = false;
      this.pump();
    };
    if (ms > 0) this.retryTimer = setTimeout(go, ms);
    else setImmediate(go);
  }

  /** Reads, hashes and sends the chunk at `next`. False when it could not be sent (retried shortly) or the file is short. */
  private sendChunk(): boolean {
    const chunk = this.o.chunkBytes ?? TRANSFER_DEFAULTS.chunkBytes;
    const buf = new Uint8Array(Math.min(chunk, this.o.manifest.bytes - this.next));
    let n: number;
    try {
      n = readSync(this.fd, buf, 0, buf.length, this.next);
    } catch (e) {
      // In a timer, where a throw would go nowhere useful: the transfer fails (the node then checks the file).
      this.finish(false, `cannot read checkpoint file ${this.o.path}: ${(e as Error).message}`);
      return false;
    }
    if (n !== buf.length) {
      this.finish(false, `checkpoint file ${this.o.path} is shorter than its manifest says`);
      return false;
    }
    const digest = sha(buf);
    const data = this.o.tamper ? this.o.tamper(this.next, buf) : buf;
    if (!this.o.send({ t: "snapChunk", xfer: this.o.xfer, offset: this.next, data, sha256: digest })) {
      // The peer's send queue is full: try again shortly rather than wait for an ack that may not come.
      this.pumpLater(50);
      return false;
    }
    this.next += n;
    this.sentBytes += n;
    return true;
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.finish(false, `no answer from ${this.o.to} for ${this.o.stallMs ?? TRANSFER_DEFAULTS.stallMs} ms`), this.o.stallMs ?? TRANSFER_DEFAULTS.stallMs);
  }

  private armQuiet(): void {
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.onQuiet(), this.o.retransmitMs ?? TRANSFER_DEFAULTS.retransmitMs);
  }

  private onQuiet(): void {
    if (this.done) return;
    this.armQuiet();
    if (!this.answered) {
      this.o.send({ t: "snapOffer", xfer: this.o.xfer, manifest: this.o.manifest, msg: this.o.msg });
      return;
    }
    this.next = this.acked;
    this.pump();
  }

  private finish(ok: boolean, reason: string): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    clearTimeout(this.quietTimer);
    clearTimeout(this.retryTimer);
    closeSync(this.fd);
    this.o.onDone(ok, reason);
  }
}

interface Incoming {
  readonly xfer: string;
  readonly from: string;
  readonly manifest: Manifest;
  readonly msg: Message;
  readonly path: string;
  readonly fd: number;
  offset: number;
  /** Bytes written since the last fdatasync. */
  unsynced: number;
}

/** A verified checkpoint file waiting for the core to ask for its install. */
export interface ReadyCheckpoint {
  readonly manifest: Manifest;
  readonly path: string;
}

/** A partial file older than this at start is deleted: no leader still holds the offer it could resume. */
const PART_KEEP_MS = OFFER_HOLD_MS;

/** Receives checkpoints from leaders; one transfer at a time. */
export class SnapshotReceiver {
  private cur: Incoming | null = null;
  private readonly ready = new Map<number, ReadyCheckpoint>();
  /** The offset a resend was last asked from in the current transfer (one request per gap). */
  private resendAskedAt = -1;
  /** The last unknown transfer a refusal was sent for (one refusal per transfer). */
  private refusedXfer = "";
  readonly dir: string;
  rejectedChunks = 0;

  constructor(
    private readonly o: {
      dir: string;
      log: Logger;
      send: (to: string, p: SnapPayload) => boolean;
      /** A complete, verified checkpoint: step its raft message into the core. */
      onComplete: (from: string, msg: Message, ready: ReadyCheckpoint) => void;
    },
  ) {
    this.dir = o.dir;
    mkdirSync(o.dir, { recursive: true });
    // A verified file that was not installed before a restart is tracked nowhere: it would only take space.
    // A partial file is kept for the leader to resume, but not past the time a leader holds its offer.
    const now = Date.now();
    for (const f of readdirSync(o.dir)) {
      const p = join(o.dir, f);
      if (f.endsWith(".ready") || (f.endsWith(".part") && now - statSync(p).mtimeMs > PART_KEEP_MS)) rmSync(p, { force: true });
    }
  }

  /** The verified file for a snapshot the core decided to install (still tracked until installed()). */
  peek(index: number): ReadyCheckpoint | undefined {
    return this.ready.get(index);
  }

  /** The file was installed (moved away): forget it, and partial files of other transfers, which are older. */
  installed(index: number): void {
    this.ready.delete(index);
    this.removeOtherParts(this.cur?.path ?? "");
  }

  onPayload(from: string, p: SnapPayload): void {
    try {
      if (p.t === "snapOffer") this.onOffer(from, p);
      else if (p.t === "snapChunk") this.onChunk(from, p);
    } catch (e) {
      // This runs in the peer transport's handler, where a throw takes the node down. A file error (a full
      // disk) drops the transfer: its next chunk is refused, and the leader offers it again (resuming the partial file).
      if (typeof (e as { syscall?: unknown }).syscall !== "string") throw e;
      this.o.log.warn(`checkpoint transfer from ${from} failed here: ${(e as Error).message}; waiting for the leader to offer it again`);
      this.abandon("a file error");
    }
  }

  private onOffer(from: string, p: Extract<SnapPayload, { t: "snapOffer" }>): void {
    const m = p.manifest;
    if (!/^[0-9a-f]{64}$/.test(m.sha256) || !Number.isSafeInteger(m.bytes) || m.bytes < 0) {
      this.o.log.warn(`refused a checkpoint offer from ${from}: bad manifest`);
      return;
    }
    if (this.cur && this.cur.manifest.sha256 !== m.sha256) this.abandon("a newer offer replaced it");
    if (!this.cur) {
      const path = join(this.dir, `${m.sha256}.part`);
      this.removeOtherParts(path);
      const fd = openSync(path, existsSync(path) ? "r+" : "w+");
      const offset = Math.min(statSync(path).size, m.bytes);
      this.cur = { xfer: p.xfer, from, manifest: m, msg: p.msg, path, fd, offset, unsynced: 0 };
      this.o.log.info(`receiving checkpoint ${m.id} (index ${m.index}, ${m.bytes} bytes) from ${from}${offset > 0 ? `, resuming at byte ${offset}` : ""}`);
    } else {
      this.cur = { ...this.cur, xfer: p.xfer, from, msg: p.msg };
    }
    this.resendAskedAt = this.cur.offset;
    this.ack(true);
    if (this.cur.offset === m.bytes) this.complete();
  }

  private onChunk(from: string, p: Extract<SnapPayload, { t: "snapChunk" }>): void {
    const c = this.cur;
    if (!c || c.xfer !== p.xfer || c.from !== from) return this.refuseUnknown(from, p.xfer);
    // Behind: a chunk sent again after a rewind, already written. Ahead: a gap; ask once per gap.
    if (p.offset !== c.offset) return p.offset > c.offset && this.resendAskedAt !== c.offset ? this.askResend() : undefined;
    if (!(p.data instanceof Uint8Array) || p.offset + p.data.byteLength > c.manifest.bytes || p.data.byteLength === 0 || sha(p.data) !== p.sha256) {
      this.rejectedChunks++;
      this.o.log.warn(`rejected a corrupted checkpoint chunk from ${from} at byte ${p.offset}: checksum mismatch; asking again`);
      return this.askResend();
    }
    writeSync(c.fd, p.data, 0, p.data.byteLength, p.offset);
    c.offset += p.data.byteLength;
    // Flushed as it comes: no burst of dirty pages to stall this disk's fsyncs, and a partial file to resume from after power loss.
    c.unsynced += p.data.byteLength;
    if (c.unsynced >= SYNC_EVERY_BYTES) {
      fdatasyncSync(c.fd);
      c.unsynced = 0;
    }
    if (c.offset === c.manifest.bytes) this.complete();
    else this.ack(false);
  }

  private askResend(): void {
    this.resendAskedAt = this.cur?.offset ?? -1;
    this.ack(true);
  }

  /** Chunks of a transfer this receiver does not know (it restarted, or dropped it): the sender should stop and offer again. */
  private refuseUnknown(from: string, xfer: string): void {
    if (typeof xfer !== "string" || xfer === this.refusedXfer) return;
    this.refusedXfer = xfer;
    this.o.send(from, { t: "snapDone", xfer, ok: false, reason: "the receiver has no such transfer (it restarted or dropped it): offer it again" });
  }

  private complete(): void {
    const c = this.cur!;
    fsyncSync(c.fd);
    closeSync(c.fd);
    this.cur = null;
    const actual = sha256File(c.path);
    if (actual !== c.manifest.sha256) {
      rmSync(c.path, { force: true });
      this.o.log.warn(`checkpoint ${c.manifest.id} from ${c.from} failed verification (sha256 ${actual}, expected ${c.manifest.sha256}); discarded`);
      this.o.send(c.from, { t: "snapDone", xfer: c.xfer, ok: false, reason: "checksum mismatch" });
      return;
    }
    const readyPath = join(this.dir, `${c.manifest.sha256}.ready`);
    renameSync(c.path, readyPath);
    const ready = { manifest: c.manifest, path: readyPath };
    // Only the newest verified file is worth keeping: the core installs a snapshot only if it is newer.
    for (const [index, old] of this.ready) {
      if (old.path === readyPath) continue;
      rmSync(old.path, { force: true });
      this.ready.delete(index);
    }
    this.ready.set(c.manifest.index, ready);
    this.o.log.info(`checkpoint ${c.manifest.id} received and verified`, { index: c.manifest.index });
    this.o.send(c.from, { t: "snapDone", xfer: c.xfer, ok: true, reason: "" });
    this.o.onComplete(c.from, c.msg, ready);
  }

  private ack(resend: boolean): void {
    const c = this.cur;
    if (c) this.o.send(c.from, { t: "snapAck", xfer: c.xfer, offset: c.offset, ...(resend ? { resend } : {}) });
  }

  private abandon(reason: string): void {
    const c = this.cur;
    if (!c) return;
    closeSync(c.fd);
    this.cur = null;
    this.o.log.info(`abandoned checkpoint transfer ${c.manifest.id}: ${reason}`);
  }

  private removeOtherParts(keep: string): void {
    for (const f of readdirSync(this.dir)) {
      const p = join(this.dir, f);
      if (p !== keep && f.endsWith(".part")) rmSync(p, { force: true });
    }
  }

  close(): void {
    this.abandon("node stopping");
  }
}

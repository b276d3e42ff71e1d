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
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Message } from "../raft/types.ts";
import type { Logger } from "../util/log.ts";
import { sha256File } from "./build.ts";
import type { Manifest } from "./manifest.ts";

export type SnapPayload =
  | { readonly t: "snapOffer"; readonly xfer: string; readonly manifest: Manifest; readonly msg: Message }
  | { readonly t: "snapAck"; readonly xfer: string; readonly offset: number }
  | { readonly t: "snapChunk"; readonly xfer: string; readonly offset: number; readonly data: Uint8Array; readonly sha256: string }
  | { readonly t: "snapDone"; readonly xfer: string; readonly ok: boolean; readonly reason: string };

export const TRANSFER_DEFAULTS = { chunkBytes: 1 << 20, windowChunks: 4, stallMs: 15_000 };

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Sends one checkpoint to one peer. */
export class SnapshotSender {
  private acked = 0;
  private next = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
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
      /** Test hook: alters a chunk before it is sent. */
      tamper?: (offset: number, data: Uint8Array) => Uint8Array;
    },
  ) {
    this.fd = openSync(o.path, "r");
  }

  start(): void {
    this.arm();
    this.o.send({ t: "snapOffer", xfer: this.o.xfer, manifest: this.o.manifest, msg: this.o.msg });
  }

  onAck(offset: number): void {
    if (this.done) return;
    this.arm();
    // The receiver says where it is: rewind to there (a rejected chunk, a resumed transfer).
    this.acked = offset;
    if (offset < this.next) this.next = offset;
    this.pump();
  }

  onDone(ok: boolean, reason: string): void {
    this.finish(ok, reason);
  }

  cancel(reason: string): void {
    this.finish(false, reason);
  }

  private pump(): void {
    const chunk = this.o.chunkBytes ?? TRANSFER_DEFAULTS.chunkBytes;
    const window = chunk * (this.o.windowChunks ?? TRANSFER_DEFAULTS.windowChunks);
    const total = this.o.manifest.bytes;
    while (this.next < total && this.next - this.acked < window) {
      const buf = new Uint8Array(Math.min(chunk, total - this.next));
      const n = readSync(this.fd, buf, 0, buf.length, this.next);
      if (n !== buf.length) return this.finish(false, `checkpoint file ${this.o.path} is shorter than its manifest says`);
      const digest = sha(buf);
      const data = this.o.tamper ? this.o.tamper(this.next, buf) : buf;
      if (!this.o.send({ t: "snapChunk", xfer: this.o.xfer, offset: this.next, data, sha256: digest })) {
        // The peer's send queue is full: try again shortly rather than wait for an ack that may not come.
        setTimeout(() => !this.done && this.pump(), 50);
        return;
      }
      this.next += n;
    }
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.finish(false, `no answer from ${this.o.to} for ${this.o.stallMs ?? TRANSFER_DEFAULTS.stallMs} ms`), this.o.stallMs ?? TRANSFER_DEFAULTS.stallMs);
  }

  private finish(ok: boolean, reason: string): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
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
}

/** A verified checkpoint file waiting for the core to ask for its install. */
export interface ReadyCheckpoint {
  readonly manifest: Manifest;
  readonly path: string;
}

/** Receives checkpoints from leaders; one transfer at a time. */
export class SnapshotReceiver {
  private cur: Incoming | null = null;
  private readonly ready = new Map<number, ReadyCheckpoint>();
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
  }

  /** The verified file for a snapshot the core decided to install. */
  take(index: number): ReadyCheckpoint | undefined {
    const r = this.ready.get(index);
    this.ready.delete(index);
    return r;
  }

  onPayload(from: string, p: SnapPayload): void {
    if (p.t === "snapOffer") this.onOffer(from, p);
    else if (p.t === "snapChunk") this.onChunk(from, p);
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
      this.cur = { xfer: p.xfer, from, manifest: m, msg: p.msg, path, fd, offset };
      this.o.log.info(`receiving checkpoint ${m.id} (index ${m.index}, ${m.bytes} bytes) from ${from}${offset > 0 ? `, resuming at byte ${offset}` : ""}`);
    } else {
      this.cur = { ...this.cur, xfer: p.xfer, from, msg: p.msg };
    }
    this.ack();
    if (this.cur.offset === m.bytes) this.complete();
  }

  private onChunk(from: string, p: Extract<SnapPayload, { t: "snapChunk" }>): void {
    const c = this.cur;
    if (!c || c.xfer !== p.xfer || c.from !== from) return;
    if (p.offset !== c.offset) return this.ack();
    if (!(p.data instanceof Uint8Array) || p.offset + p.data.byteLength > c.manifest.bytes || sha(p.data) !== p.sha256) {
      this.rejectedChunks++;
      this.o.log.warn(`rejected a corrupted checkpoint chunk from ${from} at byte ${p.offset}: checksum mismatch; asking again`);
      return this.ack();
    }
    writeSync(c.fd, p.data, 0, p.data.byteLength, p.offset);
    c.offset += p.data.byteLength;
    if (c.offset === c.manifest.bytes) this.complete();
    else this.ack();
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
    this.ready.set(c.manifest.index, ready);
    this.o.log.info(`checkpoint ${c.manifest.id} received and verified`, { index: c.manifest.index });
    this.o.send(c.from, { t: "snapDone", xfer: c.xfer, ok: true, reason: "" });
    this.o.onComplete(c.from, c.msg, ready);
  }

  private ack(): void {
    const c = this.cur;
    if (c) this.o.send(c.from, { t: "snapAck", xfer: c.xfer, offset: c.offset });
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

/**
 * SnapshotSender and SnapshotReceiver on real files, joined by an in-memory
 * link that delivers in order, asynchronously (like one TCP connection): a
 * clean transfer, acks that do not make the sender resend, a corrupted chunk
 * refused and sent again, a whole-file mismatch discarded, and a transfer cut
 * in the middle that resumes from the partial file.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Manifest } from "../../src/checkpoint/manifest.ts";
import { SnapshotReceiver, SnapshotSender, type ReadyCheckpoint, type SnapPayload } from "../../src/checkpoint/transfer.ts";
import type { Message } from "../../src/raft/types.ts";
import { Logger } from "../../src/util/log.ts";
import { waitFor } from "../helpers/ports.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "cairn-xfer-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const CHUNK = 4096;

function makeCheckpoint(bytes: number): { path: string; manifest: Manifest; data: Buffer } {
  const data = randomBytes(bytes);
  const path = join(dir, "ckpt.db");
  writeFileSync(path, data);
  const manifest: Manifest = {
    id: "ckpt-000000000100",
    index: 100,
    term: 3,
    conf: { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] },
    feedLast: 90,
    bytes,
    sha256: createHash("sha256").update(data).digest("hex"),
    clusterId: "c-1",
    createdAt: new Date().toISOString(),
    buildMs: 1,
  };
  return { path, manifest, data };
}

const snapMsg: Message = { type: "snap", from: "n1", to: "n2", term: 3, snapshot: { index: 100, term: 3, conf: { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] } } } as unknown as Message;

interface Rig {
  sender: SnapshotSender;
  receiver: SnapshotReceiver;
  logs: string[];
  /** Chunks the sender handed to the link, by offset. */
  sentChunks: number[];
  done: Promise<{ ok: boolean; reason: string }>;
  completed: ReadyCheckpoint[];
  /** Cuts the link: nothing more is delivered either way. */
  cut(): void;
}

function rig(o: {
  path: string;
  manifest: Manifest;
  receiver?: SnapshotReceiver;
  logs?: string[];
  tamper?: (offset: number, data: Uint8Array) => Uint8Array;
  /** Called for each chunk delivered to the receiver; return false to drop the link there. */
  onDeliver?: (offset: number) => boolean;
  /** Called for each frame to the receiver; return true to lose just that frame. */
  lose?: (p: SnapPayload) => boolean;
  retransmitMs?: number;
  windowChunks?: number;
  xfer?: string;
}): Rig {
  const logs = o.logs ?? [];
  const log = new Logger({ level: "debug", sink: (l) => logs.push(l) });
  let up = true;
  const sentChunks: number[] = [];
  const completed: ReadyCheckpoint[] = [];
  let sender!: SnapshotSender;
  // Deliveries are queued in order and run asynchronously, like a socket.
  const deliver = (fn: () => void) => {
    if (up) setTimeout(() => up && fn(), 0);
  };
  const receiver =
    o.receiver ??
    new SnapshotReceiver({
      dir: join(dir, "incoming"),
      log,
      send: (_to, p) => {
        deliver(() => {
          if (p.t === "snapAck" || p.t === "snapDone") sender.onPayload(p);
        });
        return true;
      },
      onComplete: (_from, _msg, ready) => completed.push(ready),
    });
  let resolveDone!: (v: { ok: boolean; reason: string }) => void;
  const done = new Promise<{ ok: boolean; reason: string }>((r) => (resolveDone = r));
  sender = new SnapshotSender({
    xfer: o.xfer ?? "x-1",
    to: "n2",
    manifest: o.manifest,
    path: o.path,
    msg: snapMsg,
    chunkBytes: CHUNK,
    windowChunks: o.windowChunks ?? 4,
    stallMs: 5000,
    retransmitMs: o.retransmitMs ?? 5000,
    tamper: o.tamper,
    send: (p: SnapPayload) => {
      if (p.t === "snapChunk") sentChunks.push(p.offset);
      if (o.lose?.(p)) return true;
      deliver(() => {
        if (p.t === "snapChunk" && o.onDeliver && !o.onDeliver(p.offset)) {
          up = false;
          return;
        }
        receiver.onPayload("n1", p);
      });
      return true;
    },
    onDone: (ok, reason) => resolveDone({ ok, reason }),
  });
  return { sender, receiver, logs, sentChunks, done, completed, cut: () => (up = false) };
}

test("a checkpoint streams in chunks, each sent once, and the received file verifies", async () => {
  const { path, manifest, data } = makeCheckpoint(CHUNK * 40 + 123);
  const r = rig({ path, manifest });
  r.sender.start();
  expect(await r.done).toEqual({ ok: true, reason: "" });
  expect(r.completed.length).toBe(1);
  expect(readFileSync(r.completed[0]!.path).equals(data)).toBe(true);
  expect(r.receiver.peek(100)?.path).toBe(r.completed[0]!.path);
  // Acks are cumulative: in-flight chunks are not sent again when an earlier ack arrives.
  expect(r.sentChunks.length).toBe(41);
  expect(new Set(r.sentChunks).size).toBe(41);
});

test("a corrupted chunk is refused, sent again, and the final file verifies", async () => {
  const { path, manifest, data } = makeCheckpoint(CHUNK * 20);
  let tampered = 0;
  const r = rig({
    path,
    manifest,
    // Flip one byte of the chunk at 7 * CHUNK, the first time only.
    tamper: (offset, d) => {
      if (offset !== 7 * CHUNK || tampered++ > 0) return d;
      const bad = new Uint8Array(d);
      bad[10] = bad[10]! ^ 0xff;
      return bad;
    },
  });
  r.sender.start();
  expect(await r.done).toEqual({ ok: true, reason: "" });
  expect(tampered).toBe(2);
  expect(r.receiver.rejectedChunks).toBe(1);
  expect(r.logs.some((l) => l.includes("rejected a corrupted checkpoint chunk") && l.includes(`at byte ${7 * CHUNK}`))).toBe(true);
  expect(r.sentChunks.filter((o) => o === 7 * CHUNK).length).toBe(2);
  // Only the chunks in flight behind the bad one go again, not the whole file.
  expect(r.sentChunks.length).toBeLessThanOrEqual(20 + 4);
  expect(readFileSync(r.completed[0]!.path).equals(data)).toBe(true);
});

test("a chunk corrupted every time never gets into the file; the transfer stalls and fails, nothing is installed", async () => {
  const { path, manifest } = makeCheckpoint(CHUNK * 6);
  const r = rig({
    path,
    manifest,
    tamper: (offset, d) => (offset === 2 * CHUNK ? new Uint8Array(d.length) : d),
  });
  r.sender.start();
  await waitFor("several rejections", () => r.receiver.rejectedChunks >= 5, 5000, 5);
  r.sender.cancel("test over");
  expect((await r.done).ok).toBe(false);
  expect(r.completed).toEqual([]);
  // The partial file holds only what verified: the first two chunks.
  const part = readdirSync(join(dir, "incoming")).find((f) => f.endsWith(".part"))!;
  expect(statSync(join(dir, "incoming", part)).size).toBe(2 * CHUNK);
  r.receiver.close();
});

test("a whole file that does not match the manifest's SHA-256 is discarded and reported to the sender", async () => {
  const { path, manifest } = makeCheckpoint(CHUNK * 8);
  // Every chunk is self-consistent, but the file differs from what the manifest promises.
  const lying = { ...manifest, sha256: createHash("sha256").update("something else").digest("hex") };
  const r = rig({ path, manifest: lying });
  r.sender.start();
  const out = await r.done;
  expect(out.ok).toBe(false);
  expect(out.reason).toContain("checksum mismatch");
  expect(r.completed).toEqual([]);
  expect(r.receiver.peek(100)).toBeUndefined();
  expect(readdirSync(join(dir, "incoming"))).toEqual([]);
  expect(r.logs.some((l) => l.includes("failed verification"))).toBe(true);
});

test("a transfer cut in the middle resumes from the partial file: only the missing bytes are sent", async () => {
  const { path, manifest, data } = makeCheckpoint(CHUNK * 30 + 77);
  const logs: string[] = [];
  const first = rig({ path, manifest, logs, onDeliver: (offset) => offset < 12 * CHUNK });
  first.sender.start();
  await waitFor("the link to drop", () => first.sentChunks.includes(12 * CHUNK), 5000, 5);
  first.sender.cancel("connection lost");
  expect((await first.done).ok).toBe(false);
  first.receiver.close(); // the node restarts: a new receiver over the same directory
  const part = readdirSync(join(dir, "incoming")).find((f) => f.endsWith(".part"))!;
  expect(statSync(join(dir, "incoming", part)).size).toBe(12 * CHUNK);

  const second = rig({ path, manifest, logs, xfer: "x-2" });
  second.sender.start();
  expect(await second.done).toEqual({ ok: true, reason: "" });
  expect(logs.some((l) => l.includes(`resuming at byte ${12 * CHUNK}`))).toBe(true);
  expect(Math.min(...second.sentChunks)).toBe(12 * CHUNK);
  expect(second.sentChunks.length).toBe(30 - 12 + 1);
  expect(readFileSync(second.completed[0]!.path).equals(data)).toBe(true);
});

test("frames lost with a connection (the offer, the last chunk) are sent again after a quiet spell", async () => {
  const { path, manifest, data } = makeCheckpoint(CHUNK * 10);
  const lost = new Set<string>();
  const once = (what: string) => (lost.has(what) ? false : (lost.add(what), true));
  const r = rig({
    path,
    manifest,
    retransmitMs: 100,
    lose: (p) => (p.t === "snapOffer" && once("offer")) || (p.t === "snapChunk" && p.offset === 9 * CHUNK && once("last")),
  });
  const t0 = performance.now();
  r.sender.start();
  expect(await r.done).toEqual({ ok: true, reason: "" });
  expect(performance.now() - t0).toBeLessThan(2000);
  expect(lost.size).toBe(2);
  expect(readFileSync(r.completed[0]!.path).equals(data)).toBe(true);
});

test("a receiver that restarts mid-transfer: the sender learns it at its next retransmission and stops; the next offer resumes", async () => {
  const { path, manifest, data } = makeCheckpoint(CHUNK * 20);
  const logs: string[] = [];
  let restarted: SnapshotReceiver | undefined;
  let sender!: SnapshotSender;
  const log = new Logger({ level: "debug", sink: (l) => logs.push(l) });
  const mkReceiver = () =>
    new SnapshotReceiver({
      dir: join(dir, "incoming"),
      log,
      send: (_to, p) => {
        setTimeout(() => (p.t === "snapAck" || p.t === "snapDone") && sender.onPayload(p), 0);
        return true;
      },
      onComplete: () => {},
    });
  let receiver = mkReceiver();
  let result: { ok: boolean; reason: string } | undefined;
  sender = new SnapshotSender({
    xfer: "x-1",
    to: "n2",
    manifest,
    path,
    msg: snapMsg,
    chunkBytes: CHUNK,
    windowChunks: 2,
    stallMs: 60_000,
    retransmitMs: 100,
    send: (p) => {
      // The old receiver "dies" after 5 chunks: frames in flight to it are lost, later ones reach the new process.
      if (p.t === "snapChunk" && p.offset >= 5 * CHUNK && !restarted) {
        receiver.close();
        restarted = receiver = mkReceiver();
        return true;
      }
      const to = receiver;
      setTimeout(() => to === receiver && to.onPayload("n1", p), 0); // frames to a dead process are lost
      return true;
    },
    onDone: (ok, reason) => (result = { ok, reason }),
  });
  const t0 = performance.now();
  sender.start();
  await waitFor("the sender to stop", () => result, 3000, 5);
  expect(performance.now() - t0).toBeLessThan(1000);
  expect(result!.ok).toBe(false);
  expect(result!.reason).toContain("no such transfer");
  // The leader offers again: the new process resumes from its partial file.
  const again = rig({ path, manifest, logs, receiver, xfer: "x-2" });
  sender = again.sender; // the new receiver answers the new transfer
  again.sender.start();
  expect(await again.done).toEqual({ ok: true, reason: "" });
  const at = Number(/resuming at byte (\d+)/.exec(logs.find((l) => l.includes("resuming at byte")) ?? "")?.[1]);
  expect(at).toBeGreaterThan(0);
  expect(at).toBeLessThanOrEqual(5 * CHUNK);
  expect(Math.min(...again.sentChunks)).toBe(at);
  expect(readFileSync(receiver.peek(100)!.path).equals(data)).toBe(true);
});

test("acks and refusals of an older transfer do not affect the current one", async () => {
  const { path, manifest } = makeCheckpoint(CHUNK * 10);
  const r = rig({ path, manifest, xfer: "x-9" });
  r.sender.onPayload({ t: "snapDone", xfer: "x-8", ok: false, reason: "stale" });
  r.sender.start();
  r.sender.onPayload({ t: "snapAck", xfer: "x-8", offset: CHUNK * 5 });
  expect(await r.done).toEqual({ ok: true, reason: "" });
});

test("a receiver that does not know a transfer (it restarted) tells the sender, which stops at once", async () => {
  const { path, manifest } = makeCheckpoint(CHUNK * 10);
  const logs: string[] = [];
  const log = new Logger({ level: "debug", sink: (l) => logs.push(l) });
  let sender!: SnapshotSender;
  const receiver = new SnapshotReceiver({
    dir: join(dir, "incoming"),
    log,
    send: (_to, p) => {
      setTimeout(() => (p.t === "snapAck" || p.t === "snapDone") && sender.onPayload(p), 0);
      return true;
    },
    onComplete: () => {},
  });
  let result: { ok: boolean; reason: string } | undefined;
  sender = new SnapshotSender({
    xfer: "x-1",
    to: "n2",
    manifest,
    path,
    msg: snapMsg,
    chunkBytes: CHUNK,
    stallMs: 60_000,
    send: () => true,
    onDone: (ok, reason) => (result = { ok, reason }),
  });
  // The sender believes the offer was taken (its ack says offset 0) but this receiver never saw it.
  sender.onPayload({ t: "snapAck", xfer: "x-1", offset: 0 });
  receiver.onPayload("n1", { t: "snapChunk", xfer: "x-1", offset: 0, data: new Uint8Array(CHUNK), sha256: "0".repeat(64) });
  await waitFor("the sender to stop", () => result, 2000, 5);
  expect(result!.ok).toBe(false);
  receiver.close();
});

test("a stale .ready or .part file left by a crash is removed when a receiver starts", () => {
  const incoming = join(dir, "incoming");
  const logs: string[] = [];
  const mk = () =>
    new SnapshotReceiver({ dir: incoming, log: new Logger({ level: "debug", sink: (l) => logs.push(l) }), send: () => true, onComplete: () => {} });
  mk().close();
  writeFileSync(join(incoming, `${"a".repeat(64)}.ready`), "x");
  writeFileSync(join(incoming, `${"b".repeat(64)}.part`), "partial");
  mk().close();
  // A .part is kept to resume; a verified .ready not installed before the crash is of no use (it is not tracked).
  expect(existsSync(join(incoming, `${"a".repeat(64)}.ready`))).toBe(false);
  expect(existsSync(join(incoming, `${"b".repeat(64)}.part`))).toBe(true);
});

test("a file error on the receiving side (disk full, unwritable file) is logged, not thrown into the peer transport; the offer sent again goes through", async () => {
  const { path, manifest, data } = makeCheckpoint(3 * CHUNK);
  // The partial file's name is taken by a directory: opening it fails (EISDIR), as a write fails on a full disk.
  const part = join(dir, "incoming", `${manifest.sha256}.part`);
  mkdirSync(part, { recursive: true });
  const r = rig({ path, manifest, retransmitMs: 100 });
  r.sender.start();
  await waitFor("the receiver's file error logged", () => r.logs.some((l) => l.includes("EISDIR")));
  rmSync(part, { recursive: true });
  expect((await r.done).ok).toBe(true);
  expect(readFileSync(r.completed[0]!.path).equals(data)).toBe(true);
});

test("a newer verified checkpoint replaces an older one that was never installed (its file is deleted)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "cairn-rcv-"));
  try {
    const log = new Logger({ level: "error" });
    const completed: string[] = [];
    const receiver = new SnapshotReceiver({ dir, log, send: () => true, onComplete: (_f, _m, r) => completed.push(r.path) });
    const offer = (index: number, body: Uint8Array) => {
      const sha256 = createHash("sha256").update(body).digest("hex");
      const manifest = { id: `ckpt-${String(index).padStart(12, "0")}`, index, term: 1, conf: { voters: ["a"], votersOutgoing: [], learners: [], learnersNext: [] }, feedLast: 0, bytes: body.byteLength, sha256, clusterId: null, createdAt: "", buildMs: 0 };
      const msg = { type: "snap" as const, from: "a", to: "b", term: 1, cluster: "c", index: 0, logTerm: 0, entries: [], commit: 0, commitTerm: 0, reject: false, rejectHint: 0, context: "", snapshot: { index, term: 1, conf: manifest.conf } };
      receiver.onPayload("a", { t: "snapOffer", xfer: `x${index}`, manifest, msg });
      receiver.onPayload("a", { t: "snapChunk", xfer: `x${index}`, offset: 0, data: body, sha256 });
    };
    offer(10, new Uint8Array([1, 2, 3]));
    offer(20, new Uint8Array([4, 5, 6, 7]));
    expect(completed.length).toBe(2);
    expect(receiver.peek(10)).toBeUndefined();
    expect(existsSync(completed[0]!)).toBe(false);
    expect(receiver.peek(20)?.path).toBe(completed[1]!);
    expect(existsSync(completed[1]!)).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("at start the receiver deletes partial files no leader can resume any more (older than the offer hold), and keeps recent ones", () => {
  const incoming = join(dir, "incoming");
  mkdirSync(incoming, { recursive: true });
  const old = join(incoming, `${"a".repeat(64)}.part`);
  const recent = join(incoming, `${"b".repeat(64)}.part`);
  writeFileSync(old, randomBytes(1000));
  writeFileSync(recent, randomBytes(1000));
  const past = (Date.now() - 11 * 60_000) / 1000;
  utimesSync(old, past, past);
  new SnapshotReceiver({ dir: incoming, log: new Logger({ level: "error", sink: () => {} }), send: () => true, onComplete: () => {} }).close();
  expect(existsSync(old)).toBe(false);
  expect(existsSync(recent)).toBe(true);
});

/**
 * Checkpoint shipping and install. A leader whose follower is behind the
 * compacted log streams it a checkpoint file (the core's snapshot message
 * rides along and reaches the follower's core once the file is in and
 * verified); the follower installs that file in the same transaction that
 * resets its log to it. Also the node's checkpoint listing, verified reads of
 * a checkpoint's file, and creation on demand.
 */
import { renameSync } from "node:fs";
import { join } from "node:path";
import type { BuildRequest, BuildResult } from "../checkpoint/build.ts";
import { Checkpointer, type CheckpointPolicy } from "../checkpoint/checkpointer.ts";
import { dbPath, discardCheckpoint, findCheckpoint, fsyncDir, type Manifest } from "../checkpoint/manifest.ts";
import { attachCheckpoint, copyCheckpointTables, detachCheckpoint } from "../checkpoint/restore.ts";
import { SnapshotReceiver, SnapshotSender, type SnapPayload } from "../checkpoint/transfer.ts";
import { ChecksumMismatchError, verifyFile } from "../checkpoint/verify.ts";
import { isFatalDbError } from "../platform/sqlite.ts";
import type { Message, RaftView, Ready } from "../raft/index.ts";
import type { RaftStore } from "../storage/store.ts";
import { assert } from "../util/assert.ts";
import type { Logger } from "../util/log.ts";
import { BadRequestError } from "./errors.ts";
import { messageProblem } from "./wire.ts";
import type { WitnessRole } from "./witness.ts";

/** Checkpoint transfer tuning (tests use small chunks). */
export interface TransferTuning {
  readonly chunkBytes?: number;
  readonly windowChunks?: number;
  readonly stallMs?: number;
  readonly bytesPerSec?: number;
}

/** What shipping and install need of the core. */
export interface SnapshotCore {
  readonly view: RaftView;
  step(m: Message): void;
  reportSnapshot(id: string, ok: boolean): void;
}

export interface SnapshotsOptions {
  readonly id: string;
  readonly store: RaftStore;
  readonly dataDir: string;
  readonly log: Logger;
  readonly policy: CheckpointPolicy;
  /** Builds a checkpoint file (a worker thread in the binary). */
  run(req: BuildRequest): Promise<BuildResult>;
  /** A database error of the node's own store while recording a checkpoint: the node cannot go on. */
  onFatal(e: Error): void;
  readonly transfer?: TransferTuning;
  /** Sends a transfer payload to a peer (false: its send queue is full). */
  send(to: string, p: SnapPayload): boolean;
  /** The core now, if one runs. */
  core(): SnapshotCore | undefined;
  /** Runs a callback's work; what it throws is fatal. */
  guarded(fn: () => void): void;
  /** The core was stepped: a Ready may be due. */
  schedule(): void;
  /** A payload failed its checks and was ignored (counted). */
  onBadPayload(): void;
  /** The state machine now stands at a checkpoint's index: waiters below it settle. */
  onInstalled(index: number): void;
  /** On a witness (witness.ts): checkpoints are taken as a position only, never downloaded, built or installed. */
  readonly witness: Pick<WitnessRole, "takeOffer" | "persistSnapshot"> | null;
}

/** The log a leader's recently active followers still need (those being sent a checkpoint are held by its offer). */
export function followersNeed(view: RaftView | undefined, self: string): number {
  if (view?.role !== "leader") return Infinity;
  let need = Infinity;
  for (const [id, p] of view.status().progress) if (id !== self && p.recentActive && p.state !== "snapshot") need = Math.min(need, p.match);
  return need;
}

export class Snapshots {
  /** The node's checkpoint files: built by policy, kept, offered to peers. */
  readonly checkpointer: Checkpointer;
  private readonly receiver: SnapshotReceiver;
  private readonly senders = new Map<string, SnapshotSender>();
  private xferSeq = 0;

  constructor(private readonly o: SnapshotsOptions) {
    this.checkpointer = new Checkpointer({
      dataDir: o.dataDir,
      store: o.store,
      log: o.log,
      policy: o.policy,
      onFatal: (e) => o.onFatal(e),
      clusterId: () => o.store.clusterId(),
      run: (req) => o.run(req),
      followersNeed: () => followersNeed(o.core()?.view, o.id),
    });
    this.receiver = new SnapshotReceiver({
      dir: join(this.checkpointer.dir, "incoming"),
      log: o.log,
      send: (to, p) => o.send(to, p),
      onComplete: (_from, msg) => {
        o.core()?.step(msg);
        o.schedule();
      },
    });
  }

  /** The core wants `core.to` to install a snapshot: stream the matching checkpoint file. */
  send(core: Message): void {
    const o = this.o;
    const meta = core.snapshot!;
    // The checkpoint this peer was already receiving if it is still usable (it resumes), else the newest.
    const man = this.checkpointer.forPeer(core.to, o.store.firstIndex());
    const m: Message = man ? { ...core, snapshot: { index: man.index, term: man.term, conf: man.conf } } : core;
    const report = (ok: boolean) =>
      queueMicrotask(() =>
        o.guarded(() => {
          o.core()?.reportSnapshot(m.to, ok);
          o.schedule();
        }),
      );
    if (!man) {
      // Log compaction copies nothing: the first follower behind the log start gets a checkpoint built for it.
      this.checkpointer.requestBuild(`${m.to} is behind the compacted log (it starts at ${o.store.firstIndex()}; snapshot ${meta.index}) and no checkpoint file covers it`);
      return report(false);
    }
    this.senders.get(m.to)?.cancel("replaced by a newer transfer");
    const sender = new SnapshotSender({
      xfer: `${o.id}-${++this.xferSeq}`,
      to: m.to,
      manifest: man,
      path: dbPath(this.checkpointer.dir, man.id),
      msg: m,
      ...o.transfer,
      send: (p) => o.send(m.to, p),
      onDone: (ok, reason) => {
        if (this.senders.get(m.to) === sender) this.senders.delete(m.to);
        this.transferDone({ to: m.to, man, ms: Math.round(performance.now() - sender.startedAt), ok, reason });
        report(ok);
      },
    });
    this.senders.set(m.to, sender);
    this.checkpointer.offering(m.to, man);
    o.log.info(`${m.to} is behind the compacted log: sending checkpoint ${man.id}`, { index: man.index, term: o.core()?.view.term });
    sender.start();
  }

  private transferDone(d: { to: string; man: Manifest; ms: number; ok: boolean; reason: string | undefined }): void {
    if (d.ok) {
      this.checkpointer.delivered(d.to);
      this.o.log.info(`sent checkpoint ${d.man.id} (${d.man.bytes} bytes) to ${d.to} in ${d.ms} ms`, { index: d.man.index });
      return;
    }
    this.o.log.warn(`checkpoint transfer to ${d.to} stopped: ${d.reason}`, { index: d.man.index });
    // A receiver refuses a file that fails its checksum, and would be offered the same one forever:
    // after a failed transfer the file is checked here, and a damaged one discarded (a new one gets built).
    void this.verifiedFile(d.man.id).catch(() => undefined); // logged there; a missing file is no news
  }

  /** A transfer payload from a peer: offers and chunks go to the receiver, answers to the sender they are about. */
  onPayload(from: string, p: SnapPayload): void {
    if (p.t === "snapOffer") {
      // Its msg reaches the core once the file is in: it gets the checks every Raft message gets.
      const m: unknown = p.msg;
      const problem = typeof p.manifest !== "object" || p.manifest === null ? "no manifest" : messageProblem(m, this.o.id);
      const msg = m as Message;
      if (problem !== null || msg.type !== "snap" || msg.from !== from || msg.snapshot === undefined) {
        this.o.onBadPayload();
        this.o.log.warn(`ignored a malformed checkpoint offer from ${from}: ${problem ?? (msg.from !== from ? `its message claims to be from ${msg.from}` : "its message is not a snapshot")}`);
        return;
      }
    }
    if (this.o.witness && p.t !== "snapAck" && p.t !== "snapDone") {
      // A witness never downloads a checkpoint: it takes the offer's position (witness.ts).
      const m = this.o.witness.takeOffer(from, p, (to, x) => this.o.send(to, x));
      if (m) this.o.core()?.step(m);
      this.o.schedule();
      return;
    }
    if (p.t === "snapAck" || p.t === "snapDone") {
      this.senders.get(from)?.onPayload(p); // checks that the answer is about this transfer, not an older one
      return;
    }
    this.receiver.onPayload(from, p);
  }

  /** Installs a received checkpoint in the same transaction that resets the log to it (the driver's snapshot store). */
  install(rd: Ready): void {
    if (this.o.witness) return this.o.witness.persistSnapshot(rd);
    const { store } = this.o;
    const checkpointer = this.checkpointer;
    const snap = rd.snapshot!;
    // Looked up, not taken: if the install fails (a full disk) the file stays tracked for the retry.
    const ready = this.receiver.peek(snap.index);
    assert(ready, () => `the core installs snapshot ${snap.index} but no verified checkpoint file is waiting for it`);
    const db = store.db;
    attachCheckpoint(db, ready.path);
    try {
      store.persist({ snapshot: snap, restore: copyCheckpointTables, hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId });
    } finally {
      detachCheckpoint(db);
    }
    renameSync(ready.path, dbPath(checkpointer.dir, ready.manifest.id));
    this.receiver.installed(snap.index);
    fsyncDir(checkpointer.dir);
    checkpointer.adopt(ready.manifest);
    this.o.onInstalled(snap.index);
    this.o.log.info(`installed checkpoint ${ready.manifest.id}: state machine now at index ${snap.index}`, { index: snap.index, term: snap.term });
  }

  /** Stops every outgoing transfer (this node is no longer the leader, or it stops). */
  cancelAll(reason: string): void {
    for (const s of this.senders.values()) s.cancel(reason);
  }

  close(): void {
    this.cancelAll("node stopping");
    this.receiver.close();
  }

  /** Builds a checkpoint of the applied state now (null when nothing was ever applied). */
  async create(): Promise<Manifest | null> {
    if (this.o.witness) throw new BadRequestError(`${this.o.id} is a witness: it keeps no state machine, so it has nothing to checkpoint; ask a data node`);
    try {
      return await this.checkpointer.create("request");
    } catch (e) {
      // Recording it wrote the node's own store: a database error there is the node's end, as in the loop.
      if (isFatalDbError(e)) this.o.onFatal(e);
      throw e;
    }
  }

  list(): Manifest[] {
    return this.checkpointer.list();
  }

  file(id: string): { manifest: Manifest; path: string } | null {
    const dir = this.checkpointer.dir;
    const m = findCheckpoint(dir, id);
    return m ? { manifest: m, path: dbPath(dir, m.id) } : null;
  }

  /**
   * A checkpoint's file, checked against its manifest's SHA-256 first (read
   * without blocking the loop). A damaged one is discarded (a new one is built
   * when one is needed) and ChecksumMismatchError thrown.
   */
  async verifiedFile(id: string): Promise<{ manifest: Manifest; path: string } | null> {
    const f = this.file(id);
    if (!f) return null;
    try {
      await verifyFile(f.path, f.manifest.sha256);
    } catch (e) {
      if (!(e instanceof ChecksumMismatchError)) throw e;
      this.o.log.error(`${e.message}: discarded it (a new checkpoint is built when one is needed)`, { checkpoint: id });
      discardCheckpoint(this.checkpointer.dir, id);
      throw e;
    }
    return f;
  }
}

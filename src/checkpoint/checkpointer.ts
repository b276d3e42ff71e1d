/**
 * The checkpointer: decides when to build a checkpoint (every K applied
 * entries, every T ms, or when the log passes B bytes), has a worker thread
 * build it, then records it: file renamed into place, manifest written last,
 * the store's snapshot set to it, the log compacted, old checkpoints pruned.
 * At most one build at a time; the Raft loop never waits for one.
 */
import { renameSync, rmSync } from "node:fs";
import { isFatalDbError } from "../platform/sqlite.ts";
import type { RaftStore } from "../storage/store.ts";
import type { Logger } from "../util/log.ts";
import type { BuildRequest, BuildResult } from "./build.ts";
import { checkpointDir, dbPath, ensureDir, fsyncDir, idFor, listCheckpoints, newestCheckpoint, pruneCheckpoints, writeManifest, type Manifest } from "./manifest.ts";

export interface CheckpointPolicy {
  /** Build when this many entries were applied since the newest checkpoint (0: never by count). */
  readonly everyEntries: number;
  /** Build when the newest checkpoint is older than this and entries were applied since (0: never by age). */
  readonly everyMs: number;
  /** Build when the stored log passes this many bytes (0: never by size). */
  readonly logBytesMax: number;
  /** Checkpoints kept on disk. */
  readonly keep: number;
  /** Entries kept in the log below the newest checkpoint, so slightly lagging followers need no checkpoint. */
  readonly trailingEntries: number;
  /** Write rate of a build (bytes/s, 0: unpaced): a burst of writes stalls the node's own commits on the same disk. */
  readonly buildBytesPerSec?: number;
}

export const DEFAULT_POLICY: CheckpointPolicy = {
  everyEntries: 10_000,
  everyMs: 10 * 60_000,
  logBytesMax: 256 << 20,
  keep: 2,
  trailingEntries: 1000,
  buildBytesPerSec: 64 << 20,
};

/**
 * A checkpoint offered to a peer stays its choice (so a cut transfer resumes
 * from the peer's partial file) and holds the log above it, for this long at
 * most after the last offer.
 */
export const OFFER_HOLD_MS = 10 * 60_000;
/** After a peer received its checkpoint, the log above it is held this long still: it installs it, then replicates from there. */
export const DELIVERED_HOLD_MS = 60_000;
/** However far behind a follower is, the log is not kept more than this many entries below the newest checkpoint. */
export const HOLD_ENTRIES_MAX = 200_000;

export class CheckpointBuildError extends Error {
  override name = "CheckpointBuildError";
}

export class Checkpointer {
  readonly dir: string;
  private building: Promise<Manifest | null> | null = null;
  private lastBuiltAt = performance.now();
  private seq = 0;
  /** After a failed build, the policy waits until then (backing off) rather than retrying on every tick. */
  private retryAt = 0;
  private failures = 0;
  /** The checkpoint last offered to each peer whose transfer has not succeeded yet. */
  private readonly offered = new Map<string, { id: string; index: number; until: number; delivered: boolean }>();

  constructor(
    private readonly opts: {
      dataDir: string;
      store: RaftStore;
      log: Logger;
      policy: CheckpointPolicy;
      clusterId: () => string | null;
      /** Runs the build off-thread; tests may pass buildCheckpointFile directly. */
      run: (req: BuildRequest) => Promise<BuildResult>;
      /**
       * The lowest log index a live follower still needs from the log (a
       * leader's slowest recently active follower's match); the log is not
       * compacted past it (within HOLD_ENTRIES_MAX).
       */
      followersNeed?: () => number;
      /**
       * A database error of the node's own store while recording a checkpoint
       * (not a full disk, not a failed build in the worker): the node cannot go on.
       */
      onFatal?: (err: Error) => void;
    },
  ) {
    this.dir = checkpointDir(opts.dataDir);
    ensureDir(this.dir);
    const removed = pruneCheckpoints(this.dir, opts.policy.keep, new Set(), true);
    if (removed.length > 0) opts.log.info(`removed partial or old checkpoint files: ${removed.join(", ")}`);
  }

  get busy(): boolean {
    return this.building !== null;
  }

  list(): Manifest[] {
    return listCheckpoints(this.dir);
  }

  newest(): Manifest | null {
    return newestCheckpoint(this.dir);
  }

  /**
   * The checkpoint to send to `peer`: the one it was last offered, if it is
   * still on disk and the log still goes on from it (the peer resumes its
   * partial file instead of starting over on a newer checkpoint); else the newest.
   */
  forPeer(peer: string, firstIndex: number): Manifest | null {
    // Only a checkpoint the log goes on from is of use (older ones, e.g. from before a recover, are not).
    const usable = this.list().filter((m) => m.index >= firstIndex - 1);
    const o = this.liveOffers().get(peer);
    const resume = o && !o.delivered ? usable.find((m) => m.id === o.id) : undefined;
    return resume ?? usable[0] ?? null;
  }

  /** `m` is being offered to `peer`: keep it, and the log after it, until the peer has it. */
  offering(peer: string, m: Manifest): void {
    this.offered.set(peer, { id: m.id, index: m.index, until: performance.now() + OFFER_HOLD_MS, delivered: false });
  }

  /** `peer` has received and verified its checkpoint: hold the log after it a little longer, while the peer installs it. */
  delivered(peer: string): void {
    const o = this.offered.get(peer);
    if (!o) return;
    o.until = Math.min(o.until, performance.now() + DELIVERED_HOLD_MS);
    o.delivered = true; // a later offer (the peer wiped and re-added) starts from the newest
  }

  private liveOffers(): Map<string, { id: string; index: number; until: number; delivered: boolean }> {
    const now = performance.now();
    for (const [peer, o] of this.offered) if (now > o.until) this.offered.delete(peer);
    return this.offered;
  }

  private pinned(): Set<string> {
    return new Set([...this.liveOffers().values()].map((o) => o.id));
  }

  /** Compact through this index at most: trailing entries, offered checkpoints and live followers hold the log. */
  private compactionPoint(newest: number): number {
    const want = Math.max(0, newest - this.opts.policy.trailingEntries);
    let hold = this.opts.followersNeed?.() ?? Infinity;
    for (const o of this.liveOffers().values()) hold = Math.min(hold, o.index);
    return Math.min(newest, Math.max(Math.min(want, hold), newest - HOLD_ENTRIES_MAX, 0));
  }

  private bytesCache = { at: -Infinity, bytes: 0 };

  /** The stored log's size, measured at most every few seconds (it is a table scan). */
  private logBytes(): number {
    const now = performance.now();
    if (now - this.bytesCache.at > 5000) this.bytesCache = { at: now, bytes: this.opts.store.logBytes() };
    return this.bytesCache.bytes;
  }

  /** Called on ticks: starts a build if the policy says so. */
  maybeStart(): void {
    if (this.building || performance.now() < this.retryAt) return;
    const p = this.opts.policy;
    const store = this.opts.store;
    const applied = store.appliedIndex();
    const base = store.snapshotMeta().index;
    if (applied <= base) return;
    const byCount = p.everyEntries > 0 && applied - base >= p.everyEntries;
    const byAge = p.everyMs > 0 && performance.now() - this.lastBuiltAt >= p.everyMs;
    const byBytes = p.logBytesMax > 0 && this.logBytes() >= p.logBytesMax;
    if (byCount || byAge || byBytes) void this.create().catch((e) => this.failed(e));
  }

  /**
   * A checkpoint is needed now (the core wants to send a snapshot that has no
   * file): starts a build unless one runs or a failure is being backed off.
   * Returns whether a build was started.
   */
  requestBuild(why: string): boolean {
    if (this.building || performance.now() < this.retryAt) return false;
    this.opts.log.info(`building a checkpoint now: ${why}`);
    void this.create().catch((e) => this.failed(e));
    return true;
  }

  /** A build that failed in the background: backed off and logged, or fatal if the node's own database failed. */
  private failed(e: unknown): void {
    if (isFatalDbError(e) && this.opts.onFatal) return this.opts.onFatal(e);
    this.opts.log.error("checkpoint failed", { error: e });
  }

  /** Builds a checkpoint now (or joins the one being built). Null when nothing new was applied. */
  create(): Promise<Manifest | null> {
    if (!this.building) {
      this.building = this.build().then(
        (m) => {
          this.failures = 0;
          return m;
        },
        (e: unknown) => {
          this.failures++;
          this.retryAt = performance.now() + Math.min(300_000, 1000 * 2 ** Math.min(this.failures, 9));
          throw e;
        },
      );
      this.building = this.building.finally(() => {
        this.building = null;
        this.lastBuiltAt = performance.now();
      });
    }
    return this.building;
  }

  private async build(): Promise<Manifest | null> {
    const out = `${this.dir}/build-${process.pid}-${++this.seq}.db.tmp`;
    // Whatever happens below, the temporary file does not outlive this build: it is renamed
    // into place, or removed (a failed build, or one that found nothing new to record).
    try {
      return await this.buildInto(out);
    } finally {
      for (const f of [out, `${out}-journal`, `${out}-wal`, `${out}-shm`]) rmSync(f, { force: true });
    }
  }

  private async buildInto(out: string): Promise<Manifest | null> {
    const store = this.opts.store;
    const res = await this.opts.run({ dbPath: store.path, outPath: out, bytesPerSec: this.opts.policy.buildBytesPerSec ?? 0 });
    const snap = store.snapshotMeta();
    // Nothing new, unless the store's snapshot has no file (a restored or recovered node): then this is it.
    const covered = res.index < snap.index || (res.index === snap.index && this.list().some((m) => m.index === snap.index));
    if (covered) {
      pruneCheckpoints(this.dir, this.opts.policy.keep, this.pinned());
      return newestCheckpoint(this.dir);
    }
    const id = idFor(res.index);
    renameSync(res.outPath, dbPath(this.dir, id));
    fsyncDir(this.dir);
    const m: Manifest = {
      id,
      index: res.index,
      term: store.term(res.index),
      conf: res.conf,
      feedLast: res.feedLast,
      bytes: res.bytes,
      sha256: res.sha256,
      clusterId: this.opts.clusterId(),
      createdAt: new Date().toISOString(),
      buildMs: res.buildMs,
    };
    // The manifest makes the checkpoint real: written after the file is complete.
    writeManifest(this.dir, m);
    this.record(m);
    return m;
  }

  /** Points the store's snapshot at the checkpoint and compacts the log below it. */
  private record(m: Manifest): void {
    const store = this.opts.store;
    if (m.index > store.snapshotMeta().index) store.createSnapshot(m.index, m.conf);
    const upTo = this.compactionPoint(m.index);
    if (upTo > store.firstIndex() - 1) store.compact(upTo);
    const removed = pruneCheckpoints(this.dir, this.opts.policy.keep, this.pinned());
    this.opts.log.info(`checkpoint ${m.id} at index ${m.index}: ${m.bytes} bytes in ${m.buildMs} ms; log compacted through ${upTo}`, {
      index: m.index,
      term: m.term,
      removed,
    });
  }

  /** Records a checkpoint that arrived from the leader and was installed (it is now this node's newest). */
  adopt(m: Manifest): void {
    writeManifest(this.dir, m);
    pruneCheckpoints(this.dir, this.opts.policy.keep, this.pinned());
  }
}

/**
 * Where the worker's module is. Run from the sources, next to this file. In a
 * `bun build --compile` binary every module is bundled into one file
 * (import.meta.url is the binary's), and a worker entry point listed in
 * build/build.ts keeps its path relative to src/ under the embedded root.
 */
export function workerUrl(here = import.meta.url): string {
  const bunfs = /^file:\/\/(?:(\/\$bunfs\/root\/)|\/?([A-Z]:\/~BUN\/root\/))/.exec(here);
  if (bunfs) return `${bunfs[1] ?? bunfs[2]}checkpoint/worker.ts`;
  return new URL("./worker.ts", here).href;
}

/** Runs builds in a worker thread, one worker per build (builds are minutes apart). */
export function workerRunner(): (req: BuildRequest) => Promise<BuildResult> {
  let seq = 0;
  return (req) =>
    new Promise((resolve, reject) => {
      const w = new Worker(workerUrl(), { type: "module" });
      const id = ++seq;
      w.onmessage = (e: MessageEvent) => {
        const d = e.data as { id: number; ok: boolean; result?: BuildResult; error?: { message: string } };
        if (d.id !== id) return;
        w.terminate();
        if (d.ok) resolve(d.result!);
        else reject(new CheckpointBuildError(`checkpoint build failed: ${d.error?.message}`));
      };
      w.onerror = (e) => {
        w.terminate();
        reject(new CheckpointBuildError(`checkpoint worker crashed: ${(e as ErrorEvent).message}`));
      };
      w.postMessage({ id, req });
    });
}

/**
 * The checkpointer: compacts the Raft log and builds checkpoint files.
 *
 * Compaction needs no copy of the state: the state database is durable with
 * its applied index in the same transaction, so the log is compacted up to
 * what is applied (keeping a trailing tail, and what live followers and
 * offered checkpoints still need), at a cost set by the log, not the state.
 * A checkpoint file (a full copy) is built by a worker thread only when one
 * is needed: a follower behind the compacted log (requestBuild), a backup or
 * POST /admin/checkpoint (create), feed retention waiting for a checkpoint
 * that covers what it trims, or the optional periodic policy; those the node
 * starts on its own are paced to a share of the time (see policy.ts). At most
 * one build at a time; the Raft loop never waits for one.
 */
import { renameSync, rmSync } from "node:fs";
import { DiskFullError, isFatalDbError } from "../platform/sqlite.ts";
import type { RaftStore } from "../storage/store.ts";
import type { Logger } from "../util/log.ts";
import type { BuildRequest, BuildResult } from "./build.ts";
import { checkpointDir, dbPath, ensureDir, fsyncDir, idFor, listCheckpoints, newestCheckpoint, pruneCheckpoints, writeManifest, type Manifest } from "./manifest.ts";
import { buildDue, compactionDue, compactionTarget, nextPacedBuildAt } from "./policy.ts";

export interface CheckpointPolicy {
  /** Build a checkpoint when this many entries were applied since the newest one (0: never by count). */
  readonly everyEntries: number;
  /** Build one when the newest checkpoint is older than this and entries were applied since (0: never by age). */
  readonly everyMs: number;
  /** Compact the log when it passes this many bytes, down to what followers and offers hold (0: never by size). */
  readonly logBytesMax: number;
  /** Checkpoints kept on disk. */
  readonly keep: number;
  /** Entries kept in the log below the applied index, so slightly lagging followers need no checkpoint. */
  readonly trailingEntries: number;
  /** Write rate of a build (bytes/s, 0: unpaced): a burst of writes stalls the node's own commits on the same disk. */
  readonly buildBytesPerSec?: number;
  /** Compact the log once it holds this many entries beyond the trailing ones (0: never by count). */
  readonly compactEveryEntries?: number;
  /**
   * Builds the node starts on its own (by count, age or feed retention) take at
   * most this share of the time: after a build of d ms the next waits
   * d * (1 / share - 1). Builds a follower or a backup needs are not paced.
   */
  readonly diskShare?: number;
}

export const DEFAULT_POLICY: CheckpointPolicy = {
  everyEntries: 0,
  everyMs: 10 * 60_000,
  logBytesMax: 256 << 20,
  keep: 2,
  trailingEntries: 1000,
  buildBytesPerSec: 64 << 20,
  compactEveryEntries: 10_000,
  diskShare: 0.05,
};

/** Why a checkpoint was built: a follower needed one, someone asked (API, CLI, backup), or the node's own policy. */
export type BuildReason = "peer" | "request" | "policy";

/**
 * A checkpoint offered to a peer stays its choice (so a cut transfer resumes
 * from the peer's partial file) and holds the log above it, for this long at
 * most after the last offer.
 */
export const OFFER_HOLD_MS = 10 * 60_000;
/** After a peer received its checkpoint, the log above it is held this long still: it installs it, then replicates from there. */
export const DELIVERED_HOLD_MS = 60_000;
/** However far behind a follower is, the log is not kept more than this many entries below the applied index. */
export const HOLD_ENTRIES_MAX = 200_000;
/** The newest checkpoint's index is re-read from the directory at most this often on ticks. */
const NEWEST_CACHE_MS = 1000;

export class CheckpointBuildError extends Error {
  override name = "CheckpointBuildError";
}

export class Checkpointer {
  readonly dir: string;
  private building: Promise<Manifest | null> | null = null;
  /** While a build runs: the applied index when it started (its checkpoint is at least that): the log is kept after it. */
  private buildHold: number | null = null;
  private lastBuiltAt = performance.now();
  private lastBuildEndAt = -Infinity;
  private lastBuildMs = 0;
  private seq = 0;
  /** After a failed build, the policy waits until then (backing off) rather than retrying on every tick. */
  private retryAt = 0;
  private failures = 0;
  /** Feed retention would trim past the newest checkpoint (set by the node). */
  private feedWaiting = false;
  private newestCache = { at: -Infinity, index: 0 };
  /** The checkpoint last offered to each peer whose transfer has not succeeded yet. */
  private readonly offered = new Map<string, { id: string; index: number; until: number; delivered: boolean }>();
  /** For /metrics. */
  readonly counts = { built: { peer: 0, request: 0, policy: 0 } as Record<BuildReason, number>, compactions: 0, compactedEntries: 0 };

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
       * A database error of the node's own store while compacting or recording
       * a checkpoint (not a full disk, not a failed build in the worker): the
       * node cannot go on.
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

  /** The newest checkpoint's index (0: none), re-read from the directory at most every second. */
  newestIndex(): number {
    const now = performance.now();
    if (now - this.newestCache.at > NEWEST_CACHE_MS) this.newestCache = { at: now, index: this.newest()?.index ?? 0 };
    return this.newestCache.index;
  }

  /** Feed retention would trim past the newest checkpoint (true) or is not held back by it (false). */
  setFeedWaiting(waiting: boolean): void {
    this.feedWaiting = waiting;
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

  /** What holds the log: live followers, offered checkpoints, a build in progress. */
  private holds(): number[] {
    const holds = [this.opts.followersNeed?.() ?? Infinity];
    for (const o of this.liveOffers().values()) holds.push(o.index);
    if (this.buildHold !== null) holds.push(this.buildHold);
    return holds;
  }

  private bytesCache = { at: -Infinity, bytes: 0 };

  /** The stored log's size, measured at most every few seconds (it is a table scan). */
  private logBytes(): number {
    if (this.opts.policy.logBytesMax <= 0) return 0;
    const now = performance.now();
    if (now - this.bytesCache.at > 5000) this.bytesCache = { at: now, bytes: this.opts.store.logBytes() };
    return this.bytesCache.bytes;
  }

  /** Called on ticks: compacts the log if it is time, and starts a build if the policy says so. */
  maybeStart(): void {
    this.maybeCompact();
    const now = performance.now();
    if (this.building || now < this.retryAt) return;
    const p = this.opts.policy;
    const why = buildDue({
      applied: this.opts.store.appliedIndex(),
      newestIndex: this.newestIndex(),
      ageMs: now - this.lastBuiltAt,
      everyEntries: p.everyEntries,
      everyMs: p.everyMs,
      feedWaiting: this.feedWaiting,
    });
    if (why === null) return;
    if (now < nextPacedBuildAt({ now, lastEndAt: this.lastBuildEndAt, lastBuildMs: this.lastBuildMs, diskShare: p.diskShare ?? 1 })) return;
    this.opts.log.debug(`building a checkpoint: ${why}`);
    void this.create("policy").catch((e) => this.failed(e));
  }

  /**
   * Compacts the log up to what is applied (less the trailing entries and
   * what is held), with no checkpoint file: the state database is the
   * snapshot. A full disk skips this round; another database error is fatal.
   */
  maybeCompact(): void {
    const store = this.opts.store;
    const p = this.opts.policy;
    const start = store.firstIndex() - 1;
    const at = { applied: store.appliedIndex(), start, trailingEntries: p.trailingEntries, everyEntries: p.compactEveryEntries ?? 0, logBytes: this.logBytes(), logBytesMax: p.logBytesMax };
    // Cheap on most ticks: the holds (a walk over the followers) only when it is time.
    if (compactionDue(at) === null) return;
    const upTo = compactionTarget({ ...at, holds: this.holds(), holdEntriesMax: HOLD_ENTRIES_MAX });
    if (upTo === null) return;
    try {
      store.compactApplied(upTo);
    } catch (e) {
      if (e instanceof DiskFullError) return this.opts.log.warn(`log compaction: not done this time (${e.message})`);
      if (isFatalDbError(e) && this.opts.onFatal) return this.opts.onFatal(e);
      throw e;
    }
    this.bytesCache.at = -Infinity;
    this.counts.compactions++;
    this.counts.compactedEntries += upTo - start;
    this.opts.log.debug(`log compacted through ${upTo} (${upTo - start} entries; applied ${store.appliedIndex()})`);
  }

  /**
   * A checkpoint is needed now (a follower is behind the compacted log, or
   * the core wants to send a snapshot that has no file): starts a build unless
   * one runs or a failure is being backed off. Returns whether a build was started.
   */
  requestBuild(why: string): boolean {
    if (this.building || performance.now() < this.retryAt) return false;
    this.opts.log.info(`building a checkpoint now: ${why}`);
    void this.create("peer").catch((e) => this.failed(e));
    return true;
  }

  /** A build that failed in the background: backed off and logged, or fatal if the node's own database failed. */
  private failed(e: unknown): void {
    if (isFatalDbError(e) && this.opts.onFatal) return this.opts.onFatal(e);
    this.opts.log.error("checkpoint failed", { error: e });
  }

  /** Builds a checkpoint now (or joins the one being built). Null when nothing new was applied. */
  create(reason: BuildReason = "request"): Promise<Manifest | null> {
    if (!this.building) {
      const startedAt = performance.now();
      this.buildHold = this.opts.store.appliedIndex();
      this.building = this.build(reason).then(
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
        this.buildHold = null;
        this.lastBuiltAt = this.lastBuildEndAt = performance.now();
        this.lastBuildMs = this.lastBuildEndAt - startedAt;
        this.newestCache.at = -Infinity;
      });
    }
    return this.building;
  }

  private async build(reason: BuildReason): Promise<Manifest | null> {
    const out = `${this.dir}/build-${process.pid}-${++this.seq}.db.tmp`;
    // Whatever happens below, the temporary file does not outlive this build: it is renamed
    // into place, or removed (a failed build, or one that found nothing new to record).
    try {
      return await this.buildInto(out, reason);
    } finally {
      for (const f of [out, `${out}-journal`, `${out}-wal`, `${out}-shm`]) rmSync(f, { force: true });
    }
  }

  private async buildInto(out: string, reason: BuildReason): Promise<Manifest | null> {
    const store = this.opts.store;
    const res = await this.opts.run({ dbPath: store.path, outPath: out, bytesPerSec: this.opts.policy.buildBytesPerSec ?? 0 });
    // Nothing new: a checkpoint at least as new is on disk already (built before, or installed from the leader meanwhile).
    if (this.list().some((m) => m.index >= res.index)) {
      pruneCheckpoints(this.dir, this.opts.policy.keep, this.pinned());
      return newestCheckpoint(this.dir);
    }
    const id = idFor(res.index);
    const term = this.termAt(res.index);
    renameSync(res.outPath, dbPath(this.dir, id));
    fsyncDir(this.dir);
    const m: Manifest = {
      id,
      index: res.index,
      term,
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
    this.counts.built[reason]++;
    const removed = pruneCheckpoints(this.dir, this.opts.policy.keep, this.pinned());
    this.opts.log.info(`checkpoint ${m.id} at index ${m.index}: ${m.bytes} bytes in ${m.buildMs} ms (${reason})`, { index: m.index, term: m.term, removed });
    return m;
  }

  /**
   * The term of the entry at `index`. The log may have been compacted past it
   * while the build ran (within the build's hold, only by a snapshot installed
   * meanwhile): then the store's snapshot, if it is that index, knows it.
   */
  private termAt(index: number): number {
    const store = this.opts.store;
    if (index >= store.firstIndex() - 1) return store.term(index);
    const snap = store.snapshotMeta();
    if (snap.index === index) return snap.term;
    throw new CheckpointBuildError(`checkpoint at index ${index}: the log was compacted past it (first index ${store.firstIndex()}) and its term is unknown; a new one is built when needed`);
  }

  /** Records a checkpoint that arrived from the leader and was installed (it is now this node's newest). */
  adopt(m: Manifest): void {
    writeManifest(this.dir, m);
    pruneCheckpoints(this.dir, this.opts.policy.keep, this.pinned());
    this.newestCache.at = -Infinity;
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

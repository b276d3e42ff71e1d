/**
 * CairnNode: the wiring of a real node. It joins the Raft core, the SQLite
 * store, the peer transport and the state machine through the Ready loop of
 * driver.ts (persist, then send, then apply, then advance: the order is
 * written there), and adds what a real node needs around it: founding,
 * ticks and stall detection, disk-full recovery, checkpoint shipping and
 * install, feed trimming, forwarding, reads, status and peer admission.
 *
 * Bun's SQLite is synchronous, so a whole Ready is handled inside one
 * macrotask: nothing can step the core between ready() and advance().
 */
import { randomUUID } from "node:crypto";
import { renameSync } from "node:fs";
import { join } from "node:path";
import { Checkpointer, DEFAULT_POLICY, workerRunner, type CheckpointPolicy } from "../checkpoint/checkpointer.ts";
import { dbPath, discardCheckpoint, findCheckpoint, fsyncDir, type Manifest } from "../checkpoint/manifest.ts";
import { ChecksumMismatchError, verifyFile } from "../checkpoint/verify.ts";
import { attachCheckpoint, copyCheckpointTables, detachCheckpoint } from "../checkpoint/restore.ts";
import { SnapshotReceiver, SnapshotSender, type SnapPayload } from "../checkpoint/transfer.ts";
import type { BuildRequest, BuildResult } from "../checkpoint/build.ts";
import type { ClusterConfig, ClusterNode } from "../discovery/load.ts";
import { DbCorruptError, DiskFullError as DbDiskFullError, isFatalDbError, type FileLock } from "../platform/sqlite.ts";
import { allMembers } from "../raft/confchange.ts";
import { NotLeaderError, ProposalDroppedError } from "../raft/errors.ts";
import { Raft, type ReadOnlyMode } from "../raft/raft.ts";
import { SeededRng } from "../raft/rng.ts";
import { NONE, type ConfState, type Entry, type Message, type Ready } from "../raft/types.ts";
import { CairnFsm } from "../statemachine/cairn.ts";
import { encodeCommand, type Command } from "../statemachine/commands.ts";
import { Applier, type Fsm } from "../statemachine/fsm.ts";
import type { RaftStore } from "../storage/store.ts";
import type { AdmissionRefusal, PeerIdentity, PeerTls, RefusedByInfo } from "../transport/context.ts";
import { FaultHook } from "../transport/faults.ts";
import { LogLimiter } from "../transport/limiter.ts";
import { PeerTransport, transportTimings } from "../transport/transport.ts";
import { assert } from "../util/assert.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import type { NodeApi, NodeStatus, ProposeOutcome, Staleness, WaitMode } from "./api.ts";
import { decideFounding, designatedFounder, founders, foundingEntry, type ProbeAnswer } from "./bootstrap.ts";
import { BadRequestError, BusyError, DiskFullError, NoLeaderError, OverloadedError, ProposalLostError, StoppedError, TimeoutError } from "./errors.ts";
import { Driver } from "./driver.ts";
import { nodeTiming, timingChange, type NodeTiming } from "./timing.ts";
import { dataDirFacts, dataDirProblem, lockDataDir, openCheckedStore } from "./datadir.ts";
import { shrinkHold } from "../discovery/plan.ts";
import { Converger, RemovalCheck, removalProof, type MemberView, type ProbeReply } from "./membership.ts";
import { AdmittedSet } from "./admission.ts";
import { metricsText, type NodeCounters } from "./metrics.ts";
import { isPeerPayload, PeerCalls, toWireError, type PeerPayload } from "./peer.ts";
import { buildStatus } from "./status.ts";
import { FeedWaiters, ProposalWaiters, ReadRounds } from "./waiters.ts";
import { messageProblem } from "./wire.ts";

export interface CairnNodeOptions {
  readonly id: string;
  readonly dataDir: string;
  readonly config: ClusterConfig;
  readonly tls: PeerTls | "insecure";
  /** Certificate expiry (src/transport/tlswatch.ts): its problems go into /status, its gauges into /metrics. */
  readonly tlsHealth?: { problems(): string[]; metricsText(): string };
  readonly logger: Logger;
  /** Raft's tick; default heartbeatMs / 2. */
  readonly tickMs?: number;
  /** A leader whose event loop stalls longer than this steps down; default electionMs. */
  readonly stallMs?: number;
  readonly readOnly?: ReadOnlyMode;
  readonly proposeTimeoutMs?: number;
  readonly readTimeoutMs?: number;
  readonly synchronous?: "FULL" | "NORMAL";
  /**
   * The leader sends its appends before its own fsync and counts itself toward the commit only
   * once that write is durable (thesis §10.2.1; driver.ts parallelAppends). Default true.
   */
  readonly parallelAppends?: boolean;
  /** Test only: a faults file for the transport's fault hook (CAIRN_TEST_FAULTS; see transport/faults.ts). */
  readonly testFaultsFile?: string;
  /**
   * Called on the leader before each write is proposed (forwarded writes included, once, here):
   * null lets it through at once; a promise delays it until it settles, and a rejection refuses it
   * (pre-commit validators, src/api/validators.ts). Awaited outside the Raft loop.
   */
  readonly beforePropose?: (bytes: Uint8Array) => Promise<void> | null;
  /** Where the peer transport listens; default the node's `peer` address in the file. */
  readonly peerListen?: { readonly host: string; readonly port: number };
  readonly checkpoints?: Partial<CheckpointPolicy>;
  /**
   * An embedder's own deterministic state machine, in place of cairn's change
   * feed and key-value space. Propose with proposeData(); the HTTP API's feed
   * and key-value routes need the default.
   */
  readonly fsm?: Fsm;
  /** How checkpoints are built; default a worker thread. */
  readonly checkpointRunner?: (req: BuildRequest) => Promise<BuildResult>;
  /** Change-feed retention: a change is trimmed only when it is beyond both limits and covered by a checkpoint. */
  readonly retention?: { readonly keepEntries?: number; readonly keepAgeMs?: number };
  /**
   * Called once when the node hit an error it cannot go on after (a database
   * error other than a full disk, a failed invariant in the loop): the node
   * has stopped serving; the embedder should end the process (serve exits 1).
   */
  readonly onFatal?: (err: Error) => void;
  /** Checkpoint transfer tuning (tests use small chunks). */
  readonly transfer?: { readonly chunkBytes?: number; readonly windowChunks?: number; readonly stallMs?: number; readonly bytesPerSec?: number };
}

const LIMITS = {
  proposalsPendingMax: 100_000,
  readRoundsMax: 1024,
  readersPerRoundMax: 100_000,
  feedWaitersMax: 10_000,
  peerCallsMax: 10_000,
  readyRoundsPerTurn: 64,
  catchUpLagMax: 64,
  convergeEveryMs: 250,
  formerPeersMax: 256,
  probeEveryMs: 300,
  diskRetryMs: 1000,
  /** After a fatal error, the embedder is told within this long even if stopping hangs. */
  fatalStopMs: 3000,
  trimEveryMs: 10_000,
  retainEntries: 1_000_000,
  retainAgeMs: 7 * 24 * 3600_000,
};

const REMOVED_DETAIL = "this node was removed from the cluster and no longer takes part: send requests to a member of the cluster file";

export class CairnNode implements NodeApi {
  readonly id: string;
  /** cairn's own state machine: its queries serve the HTTP API (unused when an embedder brings its own). */
  readonly fsm = new CairnFsm();
  private readonly appliedFsm: Fsm;
  private config: ClusterConfig;
  private readonly log: Logger;
  /** Every duration derived from the file's raft section, fixed at start (timing.ts). */
  readonly timing: NodeTiming;
  private readonly proposeTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private store!: RaftStore;
  private lock: FileLock | null = null;
  private openMs = 0;
  /** The error that stopped this node (fatal()), if one did. */
  private failure: Error | null = null;
  private checkpointer!: Checkpointer;
  private receiver!: SnapshotReceiver;
  private readonly senders = new Map<string, SnapshotSender>();
  private xferSeq = 0;
  private nextTrimAt = 0;
  private applier!: Applier;
  private transport!: PeerTransport<PeerPayload>;
  private raft: Raft | undefined;
  private readonly proposals = new ProposalWaiters(LIMITS.proposalsPendingMax);
  private readonly reads: ReadRounds;
  private readonly feedWaiters = new FeedWaiters(LIMITS.feedWaitersMax);
  private readonly calls = new PeerCalls(LIMITS.peerCallsMax);
  private readonly converger: Converger;
  private readonly removalCheck: RemovalCheck;
  /** The last peer address of every node any version of the file listed (members the file dropped keep theirs until they are out). */
  private readonly lastAddress = new Map<string, string>();
  private leaderWatchers = new Set<() => void>();
  private readonly probeAnswers = new Map<string, ProbeAnswer>();
  private timers: ReturnType<typeof setInterval>[] = [];
  /** The Ready loop (driver.ts): persist, send, apply, advance. */
  private driver!: Driver;
  private lastTickAt = 0;
  /** The leader of the last Ready: requests forwarded to it fail when it changes. */
  private prevLead: string = NONE;
  private probeTimer: ReturnType<typeof setInterval> | undefined;
  private nextConvergeAt = 0;
  private lastLeaderContact: number | null = null;
  private diskFull: { since: number; path: string } | null = null;
  private removed = false;
  private stopping = false;
  private waitingReason = "";
  /** Why the cluster file on disk is being ignored (the watcher says), or null. */
  private fileProblem: string | null = null;
  readonly counters: NodeCounters = { proposals: 0, forwarded: 0, applied: 0, readRounds: 0, stalls: 0, leaderChanges: 0, diskFull: 0, badPeerPayloads: 0, refusedPeerPayloads: 0 };
  /** Who may talk to this node, for the configuration and file it was made from (see admission.ts). */
  private admittedCache: { conf: unknown; config: ClusterConfig; set: AdmittedSet } | undefined;
  /** The admitted set the open peer connections were last checked against. */
  private admittedKey = "";
  private readonly peerLogLimiter = new LogLimiter({ intervalMs: 10_000, burst: 2, keysMax: 1024 });

  constructor(private readonly opts: CairnNodeOptions) {
    this.id = opts.id;
    this.appliedFsm = opts.fsm ?? this.fsm;
    this.config = opts.config;
    this.log = opts.logger.with({ node: opts.id });
    this.timing = nodeTiming(opts.config.raft, { tickMs: opts.tickMs, stallMs: opts.stallMs });
    this.proposeTimeoutMs = opts.proposeTimeoutMs ?? 10_000;
    this.readTimeoutMs = opts.readTimeoutMs ?? 5_000;
    this.reads = new ReadRounds({ nodeId: opts.id, roundsMax: LIMITS.readRoundsMax, waitersMax: LIMITS.readersPerRoundMax });
    this.converger = new Converger({
      log: this.log,
      catchUpLagMax: LIMITS.catchUpLagMax,
      contactTicksMax: this.timing.contactTicksMax,
    });
    this.removalCheck = new RemovalCheck({
      everyMs: this.timing.removalCheckMs,
      ask: (peer) => this.calls.call(peer, `membership check with ${peer}`, this.timing.removalCheckMs, (id) => this.transport.send(peer, { t: "probe", id })),
      view: () => this.memberView(),
      // Called in a promise's then(), whose catch() would swallow a database error of markRemoved: guarded.
      onRemoved: (e) => this.guarded(() => this.markRemoved(e.applied, `learned from ${e.from}: its configuration, applied up to index ${e.applied}, does not list this node`)),
    });
  }

  private memberView(): MemberView {
    return {
      self: this.id,
      clusterId: this.store.clusterId(),
      members: this.raft ? allMembers(this.raft.trk.conf) : [],
      leader: this.raft?.role === "leader",
      removed: this.removed || this.stopping,
      silentMs: this.lastLeaderContact === null ? Infinity : performance.now() - this.lastLeaderContact,
      lastIndex: this.store.lastIndex(),
    };
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    // Before anything reads or deletes a file in it: a second process on the same directory
    // would remove this one's temporary files and write into its log.
    this.lock = lockDataDir(this.opts.dataDir, `cairn node ${this.id}`);
    const t0 = performance.now();
    try {
      this.store = openCheckedStore({ dir: this.opts.dataDir, synchronous: this.opts.synchronous });
      this.openMs = Math.round(performance.now() - t0);
    } catch (e) {
      this.releaseLock();
      throw e;
    }
    try {
      await this.startOpened();
    } catch (e) {
      if (!this.stopping) this.store.close();
      this.releaseLock();
      throw e;
    }
  }

  private releaseLock(): void {
    this.lock?.release();
    this.lock = null;
  }

  private async startOpened(): Promise<void> {
    this.claimDataDir();
    this.applier = new Applier({ store: this.store, fsm: this.appliedFsm });
    this.checkpointer = new Checkpointer({
      dataDir: this.opts.dataDir,
      store: this.store,
      log: this.log,
      policy: { ...DEFAULT_POLICY, ...this.opts.checkpoints },
      onFatal: (e) => this.fatal(e),
      clusterId: () => this.store.clusterId(),
      run: this.opts.checkpointRunner ?? workerRunner(),
      followersNeed: () => this.followersNeed(),
    });
    this.receiver = new SnapshotReceiver({
      dir: join(this.checkpointer.dir, "incoming"),
      log: this.log,
      send: (to, p) => this.transport.send(to, p),
      onComplete: (_from, msg) => {
        this.raft?.step(msg);
        this.schedule();
      },
    });
    this.transport = new PeerTransport<PeerPayload>({
      nodeId: this.id,
      clusterId: this.store.clusterId(),
      listen: this.opts.peerListen ?? this.selfListen(),
      tls: this.opts.tls,
      logger: this.log,
      onMessage: (from, p) => this.guarded(() => this.onPeer(from, p)),
      admit: (p) => this.admitPeer(p),
      onRefusedBy: (e) => this.guarded(() => this.onRefusedBy(e)),
      // Dead connections are found and redialled within about an election timeout of this cluster.
      ...transportTimings(this.timing.raft),
      faults: this.opts.testFaultsFile === undefined ? undefined : new FaultHook(this.opts.testFaultsFile, this.id, this.log),
    });
    this.driver = this.makeDriver();
    this.admittedKey = this.admittedSet().key;
    this.transport.setPeers(this.peerAddresses());
    await this.transport.listen();
    if (this.store.clusterId() !== null || this.store.lastIndex() > 0) this.startRaft(this.store.clusterId());
    else this.startEmpty();
    this.lastTickAt = performance.now();
    this.timers.push(setInterval(() => this.guarded(() => this.onTick()), this.timing.tickMs));
    this.log.info("node started", {
      dataDir: this.opts.dataDir,
      clusterId: this.store.clusterId(),
      applied: this.store.appliedIndex(),
      lastIndex: this.store.lastIndex(),
      openCheckedMs: this.openMs, // opening the database, PRAGMA quick_check included
    });
  }

  /** A new certificate and key (checked by the caller) for new peer connections, both ways. */
  updateTls(tls: PeerTls): void {
    this.transport.updateTls(tls);
  }

  /** Stops the node; a leader first hands leadership to the most up-to-date voter. */
  async stop(opts: { transfer?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    if (opts.transfer !== false && this.raft?.role === "leader" && this.otherVoters().length > 0) {
      try {
        const t = await this.transferLeader({ timeoutMs: this.timing.transferTimeoutMs });
        this.log.info(`handed leadership to ${t.to} before stopping`, { term: this.raft?.term });
      } catch (e) {
        this.log.warn("could not hand leadership over before stopping", { error: e });
      }
    }
    this.stopping = true;
    this.driver?.stop();
    for (const t of this.timers) clearInterval(t);
    for (const s of this.senders.values()) s.cancel("node stopping");
    this.receiver?.close();
    const stopped = new StoppedError();
    this.proposals.failAll(stopped);
    this.driver?.failPersistWaiters(stopped);
    this.reads.failAll(stopped);
    this.feedWaiters.failAll();
    this.calls.failAll(stopped);
    await this.transport?.close();
    this.store?.close();
    this.releaseLock();
    this.log.info("node stopped");
  }

  /**
   * The one path for errors the node cannot go on after: any database error in
   * the loop other than a full disk (that one stops writes until space returns),
   * a failed invariant, anything a tick, a Ready or a peer message threw.
   * Crash-only: the node stops serving at once (not ready, /health 503, every
   * request refused), logs one line, and onFatal ends the process, for a
   * supervisor to restart it; a damaged database is then refused at start.
   */
  fatal(err: unknown): void {
    if (this.failure || this.stopping) return;
    const e = err instanceof Error ? err : new Error(String(err));
    this.failure = e;
    const damaged = e instanceof DbCorruptError ? " (the database is damaged: restore this data directory from a checkpoint or backup, or rejoin with an empty one)" : "";
    this.log.error(`fatal: ${e.message}${damaged}; this node stops now and the process exits (restart it)`, { error: e.name, stack: e.stack });
    // Stopping is bounded: a peer connection that does not close must not keep a failed process alive.
    let told = false;
    const tell = () => {
      if (told) return;
      told = true;
      this.opts.onFatal?.(e);
    };
    const timer = setTimeout(tell, LIMITS.fatalStopMs);
    void this.stop({ transfer: false })
      .catch(() => undefined) // the failure that matters is logged above
      .finally(() => {
        clearTimeout(timer);
        tell();
      });
  }

  /** Why this node stopped by itself (fatal()), or null. */
  failed(): Error | null {
    return this.failure;
  }

  /** Runs a timer's, a tick's or a peer message's work: what it throws is fatal, never swallowed or repeated. */
  private guarded(fn: () => void): void {
    if (this.stopping) return;
    try {
      fn();
    } catch (e) {
      this.fatal(e);
    }
  }

  /** Refuses another node's or cluster's data, or a removed node's (DataDirRefusedError); records who this data is for. */
  private claimDataDir(): void {
    let facts = dataDirFacts(this.store, this.opts.dataDir);
    if (facts.removedAt !== null && this.store.appliedIndex() > facts.removedAt && allMembers(this.store.confState()).includes(this.id)) {
      // Removed once, then added back (with an empty directory) and caught up past that: the mark is stale.
      this.store.clearRemovedAt();
      facts = { ...facts, removedAt: null };
    }
    const problem = dataDirProblem(facts, { id: this.id, cluster: this.config.cluster, configPath: this.config.path });
    if (problem) throw problem;
    if (facts.nodeId === null) this.store.setNodeId(this.id);
    // Data from before the cluster name was recorded takes the name of the file it runs with.
    if (facts.clusterName === null && facts.clusterId !== null) this.store.setClusterName(this.config.cluster);
  }

  /** This node is out of the cluster: it stops taking part, and its data is marked so it never rejoins by accident. */
  private markRemoved(index: number, how: string): void {
    if (this.removed || this.stopping) return;
    this.removed = true;
    try {
      this.store.setRemovedAt(index);
    } catch (e) {
      if (!(e instanceof DbDiskFullError)) throw e;
      this.log.error(`could not record the removal in ${this.store.path}: the disk is full; this process still takes no part`);
    }
    const committed = this.raft?.log.committed ?? 0;
    if (committed > index) how += `; catching up to index ${committed}, a later configuration may add it back`;
    this.log.warn(
      `this node was removed from the cluster (${how}): it no longer takes part; its data stays in ${this.opts.dataDir} ` +
        `and will not be used to rejoin (to add this node back, list it in the cluster file and start it with an empty data directory)`,
      { term: this.raft?.term },
    );
  }

  /** Founding or joining: from now on this data belongs to the cluster the file names. */
  private recordClusterName(): void {
    if (this.store.clusterName() === null) this.store.setClusterName(this.config.cluster);
  }

  /** A new version of the cluster file: addresses take effect at once, membership converges. */
  updateConfig(config: ClusterConfig): void {
    if (config.cluster !== this.config.cluster) {
      this.log.warn(
        `cluster file ${config.path} now names cluster ${JSON.stringify(config.cluster)}, but this node belongs to cluster ${JSON.stringify(this.config.cluster)}: ` +
          `ignored, the last good version stays in force; copy this cluster's file, or put its name back`,
      );
      return;
    }
    const before = this.config.nodes.find((n) => n.id === this.id);
    this.config = config;
    const held = this.shrinkHeld();
    if (held) this.log.warn(`cluster file ${config.path}: membership change held: ${held}`);
    const timing = this.raftTimingProblem();
    if (timing) this.log.warn(`cluster file ${config.path}: ${timing}`);
    this.transport.setPeers(this.peerAddresses());
    this.refreshAdmission();
    this.nextConvergeAt = 0;
    this.followOwnAddress(before);
  }

  /** This node's own peer address changed in the file: listen there from now on, no restart. */
  private followOwnAddress(before: ClusterNode | undefined): void {
    const me = this.config.nodes.find((n) => n.id === this.id);
    if (!me || !before || this.opts.peerListen || (me.peerHost === before.peerHost && me.peerPort === before.peerPort)) return;
    this.transport.moveListener({ host: me.peerHost, port: me.peerPort }).then(
      () => this.log.info(`this node's peer address changed in the cluster file: now listening on ${me.peer} (was ${before.peer})`),
      (e: unknown) =>
        this.log.error(
          `this node's peer address changed in the cluster file to ${me.peer}, but it cannot listen there (${(e as Error).message}); ` +
            `still listening on ${before.peer}: free the port or fix the file`,
        ),
    );
  }

  private selfListen(): { host: string; port: number } {
    const me = this.config.nodes.find((n) => n.id === this.id);
    if (!me) throw new BadRequestError(`node ${this.id} is not in the cluster file ${this.config.path}: add it or pass --id of a listed node`);
    return { host: me.peerHost, port: me.peerPort };
  }

  /**
   * The file's addresses, plus the last known address of nodes the file no
   * longer lists: such a node is a member until the leader has removed it and
   * must keep receiving the log till then, and once removed it must still get
   * the answer that tells it so (RemovalCheck). Nothing is dialled until
   * there is something to send.
   */
  private peerAddresses(): Map<string, string> {
    for (const n of this.config.nodes) {
      this.lastAddress.delete(n.id); // newest last: the oldest former peers are forgotten first
      this.lastAddress.set(n.id, n.peer);
    }
    for (const id of this.lastAddress.keys()) {
      if (this.lastAddress.size <= LIMITS.formerPeersMax) break;
      this.lastAddress.delete(id);
    }
    const out = new Map(this.config.nodes.filter((n) => n.id !== this.id).map((n) => [n.id, n.peer]));
    for (const [id, addr] of this.lastAddress) if (id !== this.id && !out.has(id)) out.set(id, addr);
    return out;
  }

  private startRaft(clusterId: string | null): void {
    const seed = Number.parseInt(randomUUID().slice(0, 8), 16);
    this.raft = new Raft({
      id: this.id,
      clusterId,
      storage: this.store,
      rng: new SeededRng(seed),
      applied: this.store.appliedIndex(),
      electionTicks: this.timing.electionTicks,
      heartbeatTicks: this.timing.heartbeatTicks,
      readOnly: this.opts.readOnly ?? "safe",
      // Joiners are added as learners and promoted once caught up; an empty (wiped) voter must not vote.
      emptyNodeVotes: false,
      asyncStorageWrites: this.opts.parallelAppends !== false,
    });
    if (clusterId !== null) this.transport.setClusterId(clusterId);
    this.driver.attach(this.raft);
  }

  // ---------------------------------------------------------------- founding

  private startEmpty(): void {
    if (designatedFounder(this.config) !== this.id) {
      const d = decideFounding({ self: this.id, config: this.config, answers: new Map() });
      if (d.kind !== "found") this.setWaiting(d.reason);
      this.startRaft(null);
      return;
    }
    const probe = () => {
      if (this.raft || this.stopping) return;
      for (const f of founders(this.config)) {
        if (f === this.id) continue;
        this.calls
          .call(f, `probe of ${f}`, LIMITS.probeEveryMs * 3, (id) => this.transport.send(f, { t: "probe", id }))
          .then((v) => this.probeAnswers.set(f, v as ProbeAnswer))
          .catch(() => this.probeAnswers.delete(f));
      }
      this.decideFounding();
    };
    this.probeTimer = setInterval(() => this.guarded(probe), LIMITS.probeEveryMs);
    this.timers.push(this.probeTimer);
    probe();
  }

  private decideFounding(): void {
    const d = decideFounding({ self: this.id, config: this.config, answers: this.probeAnswers });
    if (d.kind === "wait") return this.setWaiting(d.reason);
    if (d.kind === "join") {
      clearInterval(this.probeTimer);
      this.setWaiting(d.reason);
      this.startRaft(null);
      return;
    }
    const clusterId = randomUUID();
    const e1 = foundingEntry(this.id);
    try {
      this.store.persist({ entries: [e1], hardState: { term: 1, vote: NONE, commit: 1 }, clusterId });
    } catch (e) {
      // In a timer: a throw would end the process. The next probe round tries again.
      if (!(e instanceof DbDiskFullError)) throw e;
      return this.setWaiting(`cannot found the cluster: the disk holding ${this.store.path} is full`);
    }
    clearInterval(this.probeTimer);
    try {
      this.applier.apply([e1], { voters: [this.id], votersOutgoing: [], learners: [], learnersNext: [] });
    } catch (e) {
      // Entry 1 is durable and committed: the core hands it out again to be applied.
      if (!(e instanceof DbDiskFullError)) throw e;
    }
    this.recordClusterName();
    this.log.info(`founded cluster "${this.config.cluster}" with id ${clusterId}; the other nodes join one by one`, { clusterId, term: 1, index: 1 });
    this.waitingReason = "";
    this.startRaft(clusterId);
    this.raft!.campaign();
    this.schedule();
  }

  private setWaiting(reason: string): void {
    if (reason !== this.waitingReason) this.log.info(reason);
    this.waitingReason = reason;
  }

  // ---------------------------------------------------------------- the loop

  private schedule(): void {
    if (this.stopping) return;
    this.driver?.schedule();
  }

  /** The Ready loop over this node's SQLite store, peer transport, state machine and checkpoint files. */
  private makeDriver(): Driver {
    return new Driver({
      clock: { now: () => performance.now(), defer: (fn) => setImmediate(fn), after: (fn, ms) => void setTimeout(fn, ms) },
      log: this.store,
      transport: {
        send: (m) => this.transport.send(m.to, { t: "raft", m }),
        sendSnapshot: (m) => this.sendCheckpoint(m),
        setClusterId: (id) => this.transport.setClusterId(id),
      },
      fsm: { apply: (entries, conf) => this.applyDeferringSync(entries, conf) },
      snapshots: { install: (rd) => this.persistWithSnapshot(rd) },
      hooks: {
        beforeReady: (raft) => this.sendReadRound(raft),
        onApplied: (rd, results) => this.afterApply(rd, results),
        onAdvanced: (raft, rd) => this.afterReady(raft, rd),
        onDiskFull: (e) => this.onDiskFull(e.message),
        onFatal: (e) => this.fatal(e),
      },
      readyRoundsPerTurn: LIMITS.readyRoundsPerTurn,
      persistWaitersMax: LIMITS.proposalsPendingMax,
      parallelAppends: this.opts.parallelAppends !== false,
    });
  }

  /**
   * The apply transaction skips its own fsync: the entries it applies are in
   * the fsynced log already, and the applied index lives in the same
   * transaction as their effects, so a crash that loses it only means the
   * entries are applied again at restart, exactly once. The next fsynced
   * commit (WAL is sequential) makes it durable anyway. One fsync per Ready.
   */
  private applyDeferringSync(entries: readonly Entry[], conf: ConfState | undefined): Map<number, unknown> {
    if (entries.length === 0 || this.opts.synchronous === "NORMAL") return this.applier.apply(entries, conf);
    const db = this.store.db;
    db.exec("PRAGMA synchronous=NORMAL");
    try {
      return this.applier.apply(entries, conf);
    } finally {
      db.exec("PRAGMA synchronous=FULL");
    }
  }

  // ---------------------------------------------------------------- checkpoints

  /** The core wants `m.to` to install a snapshot: stream the matching checkpoint file. */
  private sendCheckpoint(core: Message): void {
    const meta = core.snapshot!;
    // The checkpoint this peer was already receiving if it is still usable (it resumes), else the newest.
    const man = this.checkpointer.forPeer(core.to, this.store.firstIndex());
    const m: Message = man ? { ...core, snapshot: { index: man.index, term: man.term, conf: man.conf } } : core;
    const report = (ok: boolean) =>
      queueMicrotask(() =>
        this.guarded(() => {
          this.raft?.reportSnapshot(m.to, ok);
          this.schedule();
        }),
      );
    if (!man) {
      // A restored or recovered node's snapshot has no file yet: build one (the core retries with it).
      this.checkpointer.requestBuild(`${m.to} needs snapshot ${meta.index}, which has no checkpoint file`);
      return report(false);
    }
    this.senders.get(m.to)?.cancel("replaced by a newer transfer");
    const sender = new SnapshotSender({
      xfer: `${this.id}-${++this.xferSeq}`,
      to: m.to,
      manifest: man,
      path: dbPath(this.checkpointer.dir, man.id),
      msg: m,
      ...this.opts.transfer,
      send: (p) => this.transport.send(m.to, p),
      onDone: (ok, reason) => {
        if (this.senders.get(m.to) === sender) this.senders.delete(m.to);
        const ms = Math.round(performance.now() - sender.startedAt);
        if (ok) this.checkpointer.delivered(m.to);
        if (ok) this.log.info(`sent checkpoint ${man.id} (${man.bytes} bytes) to ${m.to} in ${ms} ms`, { index: man.index });
        else this.log.warn(`checkpoint transfer to ${m.to} stopped: ${reason}`, { index: man.index });
        // A receiver refuses a file that fails its checksum, and would be offered the same one forever:
        // after a failed transfer the file is checked here, and a damaged one discarded (a new one gets built).
        if (!ok) void this.verifiedCheckpointFile(man.id).catch(() => undefined); // logged there; a missing file is no news
        report(ok);
      },
    });
    this.senders.set(m.to, sender);
    this.checkpointer.offering(m.to, man);
    this.log.info(`${m.to} is behind the compacted log: sending checkpoint ${man.id}`, { index: man.index, term: this.raft?.term });
    sender.start();
  }

  /** The log a leader's recently active followers still need (those being sent a checkpoint are held by its offer). */
  private followersNeed(): number {
    const raft = this.raft;
    if (raft?.role !== "leader") return Infinity;
    let need = Infinity;
    for (const [id, p] of raft.status().progress) if (id !== this.id && p.recentActive && p.state !== "snapshot") need = Math.min(need, p.match);
    return need;
  }

  private onSnapPayload(from: string, p: SnapPayload): void {
    if (p.t === "snapOffer") {
      // Its msg reaches the core once the file is in: it gets the checks every Raft message gets.
      const m: unknown = p.msg;
      const problem = typeof p.manifest !== "object" || p.manifest === null ? "no manifest" : messageProblem(m, this.id);
      const msg = m as Message;
      if (problem !== null || msg.type !== "snap" || msg.from !== from || msg.snapshot === undefined) {
        this.counters.badPeerPayloads++;
        this.log.warn(`ignored a malformed checkpoint offer from ${from}: ${problem ?? (msg.from !== from ? `its message claims to be from ${msg.from}` : "its message is not a snapshot")}`);
        return;
      }
    }
    if (p.t === "snapAck" || p.t === "snapDone") {
      const s = this.senders.get(from);
      s?.onPayload(p); // checks that the answer is about this transfer, not an older one
      return;
    }
    this.receiver.onPayload(from, p);
  }

  /** Installs a received checkpoint in the same transaction that resets the log to it. */
  private persistWithSnapshot(rd: Ready): void {
    const snap = rd.snapshot!;
    // Looked up, not taken: if the install fails (a full disk) the file stays tracked for the retry.
    const ready = this.receiver.peek(snap.index);
    assert(ready, () => `the core installs snapshot ${snap.index} but no verified checkpoint file is waiting for it`);
    const db = this.store.db;
    attachCheckpoint(db, ready.path);
    try {
      this.store.persist({ snapshot: snap, restore: copyCheckpointTables, hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId });
    } finally {
      detachCheckpoint(db);
    }
    const target = dbPath(this.checkpointer.dir, ready.manifest.id);
    renameSync(ready.path, target);
    this.receiver.installed(snap.index);
    fsyncDir(this.checkpointer.dir);
    this.checkpointer.adopt(ready.manifest);
    this.proposals.skippedThrough(snap.index);
    this.feedWaiters.onFeed(this.feedLast());
    this.log.info(`installed checkpoint ${ready.manifest.id}: state machine now at index ${snap.index}`, { index: snap.index, term: snap.term });
  }

  /** Whether cairn's own state machine (the feed) is the one applied. */
  private hasFeed(): boolean {
    return this.appliedFsm === this.fsm;
  }

  private feedLast(): number {
    return this.hasFeed() ? this.fsm.feedState().last : 0;
  }

  /** Trims the feed: a change goes only when it is beyond both retention limits and a checkpoint covers it. */
  private maybeTrimFeed(now: number): void {
    if (now < this.nextTrimAt || !this.hasFeed()) return;
    this.nextTrimAt = now + LIMITS.trimEveryMs;
    const newest = this.checkpointer.newest();
    if (!newest) return;
    const st = this.fsm.feedState();
    const keepEntries = this.opts.retention?.keepEntries ?? LIMITS.retainEntries;
    const keepAgeMs = this.opts.retention?.keepAgeMs ?? LIMITS.retainAgeMs;
    const byCount = st.last - keepEntries;
    const byAge = this.fsm.lastIndexBefore(st.ts - keepAgeMs);
    const cut = Math.min(byCount, byAge, newest.feedLast);
    if (cut < st.first) return;
    try {
      const r = this.fsm.trimFeed({ keepEntries: st.last - cut });
      if (r.deleted > 0) this.log.info(`feed retention: trimmed ${r.deleted} changes; the feed now starts at ${r.first}`);
    } catch (e) {
      // This runs on a tick, where a throw would take the node down; the next round tries again.
      if (!(e instanceof DbDiskFullError)) throw e;
      this.log.warn(`feed retention: not trimmed this time (${e.message})`);
    }
  }

  checkpoints(): Manifest[] {
    return this.checkpointer.list();
  }

  checkpointFile(id: string): { manifest: Manifest; path: string } | null {
    const m = findCheckpoint(this.checkpointer.dir, id);
    return m ? { manifest: m, path: dbPath(this.checkpointer.dir, m.id) } : null;
  }

  /**
   * A checkpoint's file, checked against its manifest's SHA-256 first (read
   * without blocking the loop). A damaged one is discarded (a new one is built
   * when one is needed) and ChecksumMismatchError thrown.
   */
  async verifiedCheckpointFile(id: string): Promise<{ manifest: Manifest; path: string } | null> {
    const f = this.checkpointFile(id);
    if (!f) return null;
    try {
      await verifyFile(f.path, f.manifest.sha256);
    } catch (e) {
      if (!(e instanceof ChecksumMismatchError)) throw e;
      this.log.error(`${e.message}: discarded it (a new checkpoint is built when one is needed)`, { checkpoint: id });
      discardCheckpoint(this.checkpointer.dir, id);
      throw e;
    }
    return f;
  }

  async createCheckpoint(): Promise<Manifest | null> {
    if (this.stopping) throw new StoppedError();
    try {
      return await this.checkpointer.create();
    } catch (e) {
      // Recording it wrote the node's own store: a database error there is the node's end, as in the loop.
      if (isFatalDbError(e)) this.fatal(e);
      throw e;
    }
  }

  private afterApply(rd: Ready, results: Map<number, unknown>): void {
    let feedMoved = false;
    for (const e of rd.committedEntries) {
      this.proposals.applied(e.index, e.term, results.get(e.index));
      if (results.has(e.index)) feedMoved = true;
    }
    this.counters.applied += rd.committedEntries.length;
    const applied = this.store.appliedIndex();
    for (const rs of rd.readStates) this.reads.indexFor(rs.ctx, rs.index, applied);
    this.reads.onApplied(applied);
    if (feedMoved) this.feedWaiters.onFeed(this.feedLast());
  }

  private afterReady(raft: Raft, rd: Ready): void {
    for (const ev of rd.events) this.logEvent(ev, raft);
    if (rd.softState) {
      this.counters.leaderChanges++;
      const lead = rd.softState.leader;
      this.log.info(lead ? `leader is ${lead}${lead === this.id ? " (this node)" : ""}` : "no leader", { term: raft.term, role: rd.softState.role, index: raft.log.lastIndex() });
      if (lead !== NONE) this.waitingReason = "";
      // Requests forwarded to the former leader may never be answered: fail them now.
      if (this.prevLead !== NONE && this.prevLead !== lead) {
        this.calls.failTo(this.prevLead, new NoLeaderError("the leader changed while the request was in flight; its outcome is unknown: retry with an Idempotency-Key"));
      }
      this.prevLead = lead;
      if (lead !== this.id) for (const snd of this.senders.values()) snd.cancel("this node is no longer the leader");
      for (const w of [...this.leaderWatchers]) w();
    }
  }

  private logEvent(ev: Ready["events"][number], raft: Raft): void {
    const f = { term: raft.term };
    switch (ev.kind) {
      case "removed":
        this.markRemoved(ev.index, `it applied the configuration at index ${ev.index}, which does not list it`);
        return;
      case "clusterMismatch":
        this.log.warn(`refused a message from ${ev.from} of cluster ${ev.theirs}: this node belongs to cluster ${ev.ours}`, f);
        return;
      case "clusterAdopted":
        this.recordClusterName();
        this.log.info(`joined cluster ${ev.clusterId} (first contact from ${ev.from})`, f);
        return;
      case "confApplied":
        this.log.info(`configuration at index ${ev.index}: voters ${ev.conf.voters.join(",")}${ev.conf.votersOutgoing.length ? ` (joint with ${ev.conf.votersOutgoing.join(",")})` : ""}${ev.conf.learners.length ? `, learners ${ev.conf.learners.join(",")}` : ""}`, { ...f, index: ev.index });
        this.nextConvergeAt = 0;
        this.refreshAdmission();
        if (this.removed && ev.index > (this.store.removedAt() ?? 0) && allMembers(ev.conf).includes(this.id)) {
          // Added back while its history replays (a wiped node re-added under the same id).
          this.removed = false;
          this.store.clearRemovedAt();
          this.log.info(`this node is a member again (configuration at index ${ev.index}): the earlier removal was history`, { ...f, index: ev.index });
        }
        return;
      default:
        this.log.info(`raft: ${ev.kind}`, { ...f, ...ev });
    }
  }

  private sendReadRound(raft: Raft): void {
    const ctx = this.reads.takeNext();
    if (!ctx) return;
    this.counters.readRounds++;
    try {
      raft.readIndex(ctx);
    } catch (e) {
      if (!(e instanceof NotLeaderError)) throw e;
      this.reads.failRound(ctx, new NoLeaderError());
    }
  }

  // ---------------------------------------------------------------- ticks

  private onTick(): void {
    const now = performance.now();
    this.checkStall(now);
    const elapsed = now - this.lastTickAt;
    this.lastTickAt = now;
    if (this.diskFull && now - this.diskFull.since > LIMITS.diskRetryMs) this.retryDisk();
    const raft = this.raft;
    if (!raft || this.stopping) return;
    if (!this.removed) {
      // A removed node takes no part, not even in elections. Time enters Raft only as ticks:
      // ticks this loop missed (a pause shorter than the stall threshold) are made up, so
      // election timers and the read lease age with real time, not with timer callbacks.
      const ticks = Math.min(this.timing.electionTicks, Math.max(1, Math.round(elapsed / this.timing.tickMs)));
      for (let i = 0; i < ticks; i++) raft.tick();
    }
    this.removalCheck.tick(now);
    // Covers configurations that arrive without a confApplied event (a checkpoint installed).
    this.refreshAdmission();
    if (!this.diskFull) {
      this.checkpointer.maybeStart();
      this.maybeTrimFeed(now);
    }
    if (raft.role === "leader" && now >= this.nextConvergeAt && !this.diskFull) {
      this.nextConvergeAt = now + LIMITS.convergeEveryMs;
      this.converger.step(raft, this.config);
    }
    this.schedule();
  }

  /**
   * The stall detector: a leader whose event loop stalled past stallMs (GC pause, blocked
   * disk, SIGSTOP) steps down before it does anything else. It runs on every tick and before
   * every input (peer message, write, read), because after a long pause a message or a
   * request may be served before the overdue tick; the others may have elected a new leader
   * meanwhile, and a lease taken in ticks did not age while the process stood still.
   */
  private checkStall(now: number): void {
    const raft = this.raft;
    const late = now - this.lastTickAt;
    if (!raft || this.stopping || late <= this.timing.stallMs || raft.role !== "leader" || this.lastTickAt === 0) return;
    this.counters.stalls++;
    this.log.warn(`event loop stalled for ${Math.round(late)} ms (threshold ${this.timing.stallMs} ms): stepping down rather than serving stale leadership`, { term: raft.term });
    raft.stepDown(`event loop stalled ${Math.round(late)} ms`);
    this.schedule();
  }

  // ---------------------------------------------------------------- disk full

  /** The core handed out a Ready we could not persist: rebuild it from what is durable. */
  private onDiskFull(detail: string): void {
    this.counters.diskFull++;
    if (!this.diskFull) this.log.error(`disk full: writes stop until space returns (${detail})`, { term: this.raft?.term });
    this.diskFull = { since: performance.now(), path: this.store.path };
    this.rebuildRaft();
  }

  private rebuildRaft(): void {
    // Entries past the durable log were neither written nor sent: they are lost with the old core, so their writers learn it now.
    const lost = new DiskFullError(this.store.path);
    this.proposals.failAbove(this.store.lastIndex(), lost);
    this.driver.failPersistWaiters(lost);
    this.startRaft(this.store.clusterId());
  }

  private retryDisk(): void {
    try {
      this.store.persist({ entries: [], hardState: this.store.hardState() });
      this.log.info("disk space is back: writes resume");
      this.diskFull = null;
      this.schedule();
    } catch (e) {
      if (!(e instanceof DbDiskFullError)) throw e;
      this.diskFull = { since: performance.now(), path: this.store.path };
    }
  }

  // ---------------------------------------------------------------- peers

  /** Who may talk to this node now: members of the applied configuration and nodes the file lists, less revoked ones. */
  private admittedSet(): AdmittedSet {
    const conf = this.raft?.trk.conf ?? this.store.confState();
    const c = this.admittedCache;
    if (c !== undefined && c.conf === conf && c.config === this.config) return c.set;
    const set = new AdmittedSet({
      members: allMembers(conf),
      appliedIndex: this.store.appliedIndex(),
      fileIds: this.config.nodes.map((n) => n.id),
      filePath: this.config.path,
      revoked: this.config.revoked ?? [],
    });
    // Without a core the conf is parsed afresh each time: cache by content then.
    if (c !== undefined && c.set.key === set.key) {
      this.admittedCache = { ...c, conf };
      return c.set;
    }
    this.admittedCache = { conf, config: this.config, set };
    return set;
  }

  /** The transport's admission rule (every handshake, either direction). */
  private admitPeer(p: PeerIdentity): AdmissionRefusal | null {
    const r = this.admittedSet().check(p);
    if (r === null || r.kind !== "notMember") return r;
    // A removed node can no longer ask whether it is out (its probes are refused): the refusal tells it.
    return { ...r, info: this.probeAnswer() };
  }

  /** The admitted set may have changed: close the connections of peers no longer admitted. */
  private refreshAdmission(): void {
    const key = this.admittedSet().key;
    if (key === this.admittedKey) return;
    this.admittedKey = key;
    this.transport.recheckPeers();
  }

  /** A peer refused this node as a non-member and said what its configuration is: that may prove this node was removed. */
  private onRefusedBy(e: RefusedByInfo): void {
    const v = this.memberView();
    if (v.leader || !v.members.includes(this.id)) return;
    const applied = removalProof(e.info, v);
    if (applied !== null) this.markRemoved(applied, `learned from ${e.peer}, which refused this node: its configuration, applied up to index ${applied}, does not list this node`);
  }

  private onPeer(from: string, p: PeerPayload): void {
    if (this.stopping) return;
    // Defence in depth: the transport admits only members, but membership changes under open connections.
    const refusal = this.admittedSet().check({ id: from, serial: null });
    if (refusal !== null) {
      this.counters.refusedPeerPayloads++;
      const suppressed = this.peerLogLimiter.take(`payload:${from}`);
      if (suppressed !== undefined) this.log.warn(`dropped a payload from peer ${from}: ${refusal.reason}`, { peer: from, refusal: refusal.kind, suppressedLines: suppressed });
      return;
    }
    if (!isPeerPayload(p)) {
      this.counters.badPeerPayloads++;
      this.log.warn(`ignored a malformed payload from ${from}`);
      return;
    }
    switch (p.t) {
      case "raft":
        return this.onRaftMessage(from, p.m);
      case "fwd":
        return void this.answer(from, p.id, this.proposeBytes(p.cmd, p.wait, this.proposeTimeoutMs, false));
      case "xfer":
        return void this.answer(from, p.id, this.transferLeader({ to: p.to ?? undefined, forwarded: true }));
      case "probe":
        return void this.answer(from, p.id, Promise.resolve(this.probeAnswer()));
      case "resp":
        return this.calls.answer(from, p);
      default:
        return this.onSnapPayload(from, p);
    }
  }

  private onRaftMessage(from: string, m: Message): void {
    const problem = messageProblem(m, this.id);
    if (problem !== null || m.from !== from || m.type === "snap") {
      this.counters.badPeerPayloads++;
      this.log.warn(`ignored a malformed raft message from ${from}: ${problem ?? (m.type === "snap" ? "snapshots arrive only as checkpoint transfers" : `claims to be from ${m.from}`)}`);
      return;
    }
    const raft = this.raft;
    if (!raft) return;
    this.checkStall(performance.now());
    if (m.from === raft.lead) this.lastLeaderContact = performance.now();
    raft.step(m);
    this.schedule();
  }

  private async answer(to: string, id: number, work: Promise<unknown>): Promise<void> {
    try {
      this.transport.send(to, { t: "resp", id, ok: true, value: await work });
    } catch (e) {
      this.transport.send(to, { t: "resp", id, ok: false, error: toWireError(e) });
    }
  }

  private probeAnswer(): ProbeReply {
    const empty = this.store.clusterId() === null && this.store.lastIndex() === 0;
    const members = this.raft ? allMembers(this.raft.trk.conf) : [];
    return { empty, clusterId: this.store.clusterId(), applied: this.store.appliedIndex(), members };
  }

  // ---------------------------------------------------------------- NodeApi

  async propose(cmd: Command, opts: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ProposeOutcome> {
    const bytes = encodeCommand(cmd);
    return this.proposeBytes(bytes, opts.wait ?? "applied", opts.timeoutMs ?? this.proposeTimeoutMs, true);
  }

  /**
   * For embedders: proposes opaque bytes to the state machine (forwarded to
   * the leader from a follower); "applied" resolves with what its apply()
   * returned for them.
   */
  async proposeData(data: Uint8Array, opts: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ProposeOutcome> {
    if (data.byteLength === 0) throw new BadRequestError("an empty proposal is the leader's no-op and cannot be applied: send at least one byte");
    return this.proposeBytes(data, opts.wait ?? "applied", opts.timeoutMs ?? this.proposeTimeoutMs, true);
  }

  private async proposeBytes(bytes: Uint8Array, wait: WaitMode, timeoutMs: number, mayForward: boolean): Promise<ProposeOutcome> {
    let raft = this.writable();
    if (raft.role !== "leader") {
      if (!mayForward || raft.lead === NONE) throw new NoLeaderError();
      this.counters.forwarded++;
      const lead = raft.lead;
      return (await this.calls.call(lead, `the write forwarded to leader ${lead}`, timeoutMs, (id) =>
        this.transport.send(lead, { t: "fwd", id, cmd: bytes, wait }),
      )) as ProposeOutcome;
    }
    const check = this.opts.beforePropose?.(bytes) ?? null;
    if (check !== null) {
      await check;
      raft = this.writable();
      if (raft.role !== "leader") throw new NoLeaderError(`${this.id} lost the leadership while the write was being validated`);
    }
    if (this.proposals.full() || this.driver.persistWaiting() >= this.driver.persistWaitersMax) throw new OverloadedError(LIMITS.proposalsPendingMax);
    let at: { index: number; term: number };
    try {
      at = raft.propose(bytes);
    } catch (e) {
      if (e instanceof NotLeaderError) throw new NoLeaderError();
      if (e instanceof ProposalDroppedError) throw new BusyError(e.message);
      throw e;
    }
    this.counters.proposals++;
    this.schedule();
    if (wait === "accepted") {
      await this.driver.waitPersisted(at);
      return { kind: "accepted", raftIndex: at.index, term: at.term };
    }
    const result = await this.proposals.wait(at, timeoutMs);
    return { kind: "applied", result: result as never };
  }

  private writable(): Raft {
    if (this.stopping) throw new StoppedError();
    if (this.diskFull) throw new DiskFullError(this.diskFull.path);
    if (!this.raft) throw new NoLeaderError(this.waitingReason || "this node has not joined a cluster yet");
    if (this.removed) throw new NoLeaderError(REMOVED_DETAIL);
    this.checkStall(performance.now());
    return this.raft;
  }

  readBarrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping) return Promise.reject(new StoppedError());
    this.checkStall(performance.now());
    if (this.removed) return Promise.reject(new NoLeaderError(REMOVED_DETAIL));
    if (!this.raft || this.raft.lead === NONE) return Promise.reject(new NoLeaderError());
    const p = this.reads.wait(opts.timeoutMs ?? this.readTimeoutMs);
    this.schedule();
    return p;
  }

  staleness(): Staleness {
    const commit = this.raft?.log.committed ?? this.store.hardState().commit;
    const contact = this.raft?.role === "leader" ? 0 : this.lastLeaderContact === null ? null : Math.round(performance.now() - this.lastLeaderContact);
    return { applied: this.store.appliedIndex(), commit, leaderContactMs: contact };
  }

  waitForFeed(after: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.feedWaiters.wait(after, this.feedLast(), timeoutMs, signal);
  }

  status(): NodeStatus {
    return buildStatus({
      id: this.id,
      raft: this.raft,
      store: this.store,
      fsm: this.hasFeed() ? this.fsm : null,
      config: this.config,
      tickMs: this.timing.tickMs,
      removed: this.removed,
      stopping: this.stopping,
      problems: this.problems(),
      version: VERSION,
    });
  }

  /** The watcher's reason for ignoring the file on disk (null: the file is in force). */
  setFileProblem(problem: string | null): void {
    this.fileProblem = problem;
  }

  /** Why the file's membership is held against the voters in force (plan.ts rule 0b), or null. */
  private shrinkHeld(): string | null {
    const conf = this.raft?.trk.conf;
    if (!conf || conf.votersOutgoing.length > 0) return null;
    return shrinkHold({ voters: conf.voters, nodes: this.config.nodes, allowShrink: this.config.allowShrink });
  }

  private raftTimingProblem(): string | null {
    return timingChange(this.timing, this.config.raft);
  }

  private problems(): string[] {
    const out: string[] = [];
    if (this.waitingReason) out.push(this.waitingReason);
    if (this.fileProblem) out.push(this.fileProblem);
    const held = this.shrinkHeld();
    if (held) out.push(`membership change held: ${held}`);
    const timing = this.raftTimingProblem();
    if (timing) out.push(timing);
    if (this.diskFull) out.push(new DiskFullError(this.diskFull.path).message);
    if (this.removed) out.push("this node was removed from the cluster");
    out.push(...(this.opts.tlsHealth?.problems() ?? []));
    return out;
  }

  readiness(): { ready: boolean; reason: string } {
    const raft = this.raft;
    if (this.failure) return { ready: false, reason: `failed: ${this.failure.message}` };
    if (this.stopping) return { ready: false, reason: "stopping" };
    if (!raft) return { ready: false, reason: this.waitingReason || "not joined yet" };
    if (this.diskFull) return { ready: false, reason: "disk full" };
    if (raft.lead === NONE) return { ready: false, reason: "no leader known" };
    const applied = this.store.appliedIndex();
    if (applied < raft.log.committed) return { ready: false, reason: `catching up: applied ${applied} of ${raft.log.committed}` };
    return { ready: true, reason: `leader ${raft.lead}, applied ${applied}` };
  }

  async transferLeader(opts: { to?: string; timeoutMs?: number; forwarded?: boolean } = {}): Promise<{ from: string; to: string }> {
    const raft = this.raft;
    const timeoutMs = opts.timeoutMs ?? this.timing.transferTimeoutMs;
    if (!raft || raft.lead === NONE) throw new NoLeaderError();
    if (raft.role !== "leader") {
      if (opts.forwarded) throw new NoLeaderError(`${this.id} is no longer the leader`);
      const lead = raft.lead;
      try {
        return (await this.calls.call(lead, `leadership transfer via ${lead}`, timeoutMs, (id) => this.transport.send(lead, { t: "xfer", id, to: opts.to ?? null }))) as { from: string; to: string };
      } catch (e) {
        // The transfer's success changes the leader, which fails the open request: report the change.
        const now = this.raft?.lead ?? NONE;
        if (e instanceof NoLeaderError && now !== NONE && now !== lead) return { from: lead, to: now };
        throw e;
      }
    }
    const to = opts.to ?? this.bestVoter();
    if (!to) throw new BadRequestError("there is no other voter to hand leadership to");
    if (!raft.trk.isVoter(to) || to === this.id) throw new BadRequestError(`${to} is not another voter of this cluster (voters: ${[...raft.trk.voterIds()].join(", ")})`);
    const from = this.id;
    raft.transferLeadership(to);
    this.schedule();
    await this.waitForLeaderChange(timeoutMs);
    return { from, to: this.raft!.lead };
  }

  private otherVoters(): string[] {
    return this.raft ? [...this.raft.trk.voterIds()].filter((v) => v !== this.id) : [];
  }

  /** The other voter with the highest match (recently active first). */
  private bestVoter(): string | undefined {
    const st = this.raft!.status();
    let best: { id: string; match: number; active: boolean } | undefined;
    for (const id of this.otherVoters()) {
      const p = st.progress.get(id);
      const c = { id, match: p?.match ?? 0, active: p?.recentActive ?? false };
      if (!best || (c.active && !best.active) || (c.active === best.active && c.match > best.match)) best = c;
    }
    return best?.id;
  }

  private waitForLeaderChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const lead = this.raft?.lead;
        if (lead && lead !== this.id) done(null);
      };
      const done = (err: Error | null) => {
        clearTimeout(timer);
        this.leaderWatchers.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new TimeoutError("the leadership transfer", timeoutMs)), timeoutMs);
      this.leaderWatchers.add(check);
    });
  }

  metricsText(): string {
    return metricsText({ node: this, raft: this.raft, store: this.store, transport: this.transport, counters: this.counters, diskFull: this.diskFull !== null }) + (this.opts.tlsHealth?.metricsText() ?? "");
  }
}

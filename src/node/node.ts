/**
 * CairnNode: the wiring of a real node. It joins the Raft core, the SQLite
 * store, the TLS peer transport, timers and the state machine through the
 * Ready loop of driver.ts (persist, then send, then apply, then advance: the
 * order is written there), and hands the HTTP API its NodeApi. Each job
 * around the loop is in its own file: founding.ts, ticker.ts (ticks and the
 * stall detector), diskfull.ts, snapshots.ts (checkpoint shipping and
 * install), feedtrim.ts, handover.ts (leadership transfer), writes.ts
 * (proposals and forwarding), status.ts (status, problems, readiness),
 * admission.ts and addresses.ts (peers), readyhooks.ts (what a Ready settles).
 *
 * Bun's SQLite is synchronous, so a whole Ready is handled inside one
 * macrotask: nothing can step the core between ready() and advance().
 */
import { randomUUID } from "node:crypto";
import { Checkpointer, DEFAULT_POLICY, workerRunner } from "../checkpoint/checkpointer.ts";
import type { Manifest } from "../checkpoint/manifest.ts";
import type { ClusterConfig, ClusterNode } from "../discovery/load.ts";
import { shrinkHold } from "../discovery/plan.ts";
import { DbCorruptError, isFatalDbError, type FileLock } from "../platform/sqlite.ts";
import { allMembers, NONE, Raft, SeededRng, type ConfState, type Entry, type Message } from "../raft/index.ts";
import { CairnFsm } from "../statemachine/cairn.ts";
import { encodeCommand, type Command } from "../statemachine/commands.ts";
import { Applier, type Fsm } from "../statemachine/fsm.ts";
import type { RaftStore } from "../storage/store.ts";
import type { AdmissionRefusal, PeerIdentity, PeerTls, RefusedByInfo } from "../transport/context.ts";
import { FaultHook } from "../transport/faults.ts";
import { LogLimiter } from "../transport/limiter.ts";
import { PeerTransport, transportTimings } from "../transport/transport.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { AddressBook } from "./addresses.ts";
import { Admission, type AdmittedSet } from "./admission.ts";
import type { NodeApi, NodeStatus, ProposeOutcome, Staleness, WaitMode } from "./api.ts";
import type { ProbeAnswer } from "./bootstrap.ts";
import { claimDataDir, lockDataDir, openCheckedStore } from "./datadir.ts";
import { DiskFull } from "./diskfull.ts";
import { Driver } from "./driver.ts";
import { BadRequestError, DiskFullError, NoLeaderError, StoppedError } from "./errors.ts";
import { FeedTrimmer } from "./feedtrim.ts";
import { Founding } from "./founding.ts";
import { Handover } from "./handover.ts";
import { Converger, RemovalCheck, removalProof, type MemberView, type ProbeReply } from "./membership.ts";
import { metricsText, type NodeCounters } from "./metrics.ts";
import { LIMITS, type CairnNodeOptions } from "./options.ts";
import { isPeerPayload, PeerCalls, toWireError, type PeerPayload } from "./peer.ts";
import { ReadyHooks } from "./readyhooks.ts";
import { followersNeed, Snapshots } from "./snapshots.ts";
import { buildStatus, problems, readiness } from "./status.ts";
import { Ticker } from "./ticker.ts";
import { nodeTiming, timingChange, type NodeTiming } from "./timing.ts";
import { FeedWaiters, ProposalWaiters, ReadRounds } from "./waiters.ts";
import { messageProblem } from "./wire.ts";
import { Writes } from "./writes.ts";

export type { CairnNodeOptions } from "./options.ts";

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
  /** The error that stopped this node (fatal()), if one did. */
  private failure: Error | null = null;
  private checkpointer!: Checkpointer;
  private snapshots!: Snapshots;
  private applier!: Applier;
  private transport!: PeerTransport<PeerPayload>;
  private raft: Raft | undefined;
  /** The Ready loop (driver.ts): persist, send, apply, advance. */
  private driver!: Driver;
  private founding: Founding | undefined;
  private trimmer!: FeedTrimmer;
  private readonly proposals = new ProposalWaiters(LIMITS.proposalsPendingMax);
  private readonly reads: ReadRounds;
  private readonly feedWaiters = new FeedWaiters(LIMITS.feedWaitersMax);
  private readonly calls = new PeerCalls(LIMITS.peerCallsMax);
  private readonly converger: Converger;
  private readonly removalCheck: RemovalCheck;
  private readonly ticker: Ticker;
  private readonly diskFull: DiskFull;
  private readonly handover: Handover;
  private readonly writes: Writes;
  private readonly hooks: ReadyHooks;
  private readonly addresses: AddressBook;
  private readonly admission = new Admission();
  private timers: ReturnType<typeof setInterval>[] = [];
  private nextConvergeAt = 0;
  private lastLeaderContact: number | null = null;
  private removed = false;
  private stopping = false;
  private waitingReason = "";
  /** Why the cluster file on disk is being ignored (the watcher says), or null. */
  private fileProblem: string | null = null;
  readonly counters: NodeCounters = { proposals: 0, forwarded: 0, applied: 0, readRounds: 0, stalls: 0, leaderChanges: 0, diskFull: 0, badPeerPayloads: 0, refusedPeerPayloads: 0 };
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
    this.converger = new Converger({ log: this.log, catchUpLagMax: LIMITS.catchUpLagMax, contactTicksMax: this.timing.contactTicksMax });
    this.removalCheck = new RemovalCheck({
      everyMs: this.timing.removalCheckMs,
      ask: (peer) => this.calls.call(peer, `membership check with ${peer}`, this.timing.removalCheckMs, (id) => this.transport.send(peer, { t: "probe", id })),
      view: () => this.memberView(),
      // Called in a promise's then(), whose catch() would swallow a database error of markRemoved: guarded.
      onRemoved: (e) => this.guarded(() => this.markRemoved(e.applied, `learned from ${e.from}: its configuration, applied up to index ${e.applied}, does not list this node`)),
    });
    this.ticker = new Ticker({ timing: this.timing, log: this.log });
    this.addresses = new AddressBook({ self: this.id, formerPeersMax: LIMITS.formerPeersMax });
    this.diskFull = new DiskFull({
      store: () => this.store,
      log: this.log,
      retryMs: LIMITS.diskRetryMs,
      rebuild: (lost) => {
        this.proposals.failAbove(this.store.lastIndex(), lost);
        this.driver.failPersistWaiters(lost);
        this.startRaft(this.store.clusterId());
      },
      schedule: () => this.schedule(),
    });
    this.handover = new Handover({
      id: this.id,
      core: () => this.raft,
      forward: (lead, to, ms) => this.calls.call(lead, `leadership transfer via ${lead}`, ms, (id) => this.transport.send(lead, { t: "xfer", id, to })) as Promise<{ from: string; to: string }>,
      schedule: () => this.schedule(),
      watchersMax: LIMITS.transferWaitersMax,
    });
    this.writes = new Writes({
      id: this.id,
      writable: () => this.writable(),
      forward: (lead, cmd, wait, ms) => this.calls.call(lead, `the write forwarded to leader ${lead}`, ms, (id) => this.transport.send(lead, { t: "fwd", id, cmd, wait })) as Promise<ProposeOutcome>,
      beforePropose: opts.beforePropose,
      proposals: this.proposals,
      saved: { waitPersisted: (at) => this.driver.waitPersisted(at), persistWaiting: () => this.driver.persistWaiting(), persistWaitersMax: LIMITS.proposalsPendingMax },
      inFlightMax: LIMITS.proposalsPendingMax,
      schedule: () => this.schedule(),
      counters: this.counters,
    });
    this.hooks = this.makeHooks();
  }

  private makeHooks(): ReadyHooks {
    return new ReadyHooks({
      id: this.id,
      log: this.log,
      store: () => this.store,
      proposals: this.proposals,
      reads: this.reads,
      counters: this.counters,
      feedMoved: () => this.feedWaiters.onFeed(this.feedLast()),
      onLeader: (prev, lead) => {
        if (lead !== NONE) this.waitingReason = "";
        // Requests forwarded to the former leader may never be answered: fail them now.
        if (prev !== NONE && prev !== lead) {
          this.calls.failTo(prev, new NoLeaderError("the leader changed while the request was in flight; its outcome is unknown: retry with an Idempotency-Key"));
        }
        if (lead !== this.id) this.snapshots.cancelAll("this node is no longer the leader");
        this.handover.onLeaderChange();
      },
      removed: () => this.removed,
      markRemoved: (index, how) => this.markRemoved(index, how),
      memberAgain: () => (this.removed = false),
      recordClusterName: () => this.recordClusterName(),
      confApplied: () => {
        this.nextConvergeAt = 0;
        this.refreshAdmission();
      },
    });
  }

  private memberView(): MemberView {
    return {
      self: this.id,
      clusterId: this.store.clusterId(),
      members: this.raft ? allMembers(this.raft.view.conf) : [],
      leader: this.raft?.view.role === "leader",
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
    let openMs: number;
    try {
      this.store = openCheckedStore({ dir: this.opts.dataDir, synchronous: this.opts.synchronous });
      openMs = Math.round(performance.now() - t0);
    } catch (e) {
      this.releaseLock();
      throw e;
    }
    try {
      await this.startOpened(openMs);
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

  private async startOpened(openMs: number): Promise<void> {
    claimDataDir(this.store, { id: this.id, dataDir: this.opts.dataDir, config: this.config });
    this.applier = new Applier({ store: this.store, fsm: this.appliedFsm });
    this.checkpointer = new Checkpointer({
      dataDir: this.opts.dataDir,
      store: this.store,
      log: this.log,
      policy: { ...DEFAULT_POLICY, ...this.opts.checkpoints },
      onFatal: (e) => this.fatal(e),
      clusterId: () => this.store.clusterId(),
      run: this.opts.checkpointRunner ?? workerRunner(),
      followersNeed: () => followersNeed(this.raft?.view, this.id),
    });
    this.snapshots = new Snapshots({
      id: this.id,
      store: this.store,
      checkpointer: this.checkpointer,
      log: this.log,
      transfer: this.opts.transfer,
      send: (to, p) => this.transport.send(to, p),
      core: () => this.raft,
      guarded: (fn) => this.guarded(fn),
      schedule: () => this.schedule(),
      onBadPayload: () => this.counters.badPeerPayloads++,
      onInstalled: (index) => {
        this.proposals.skippedThrough(index);
        this.feedWaiters.onFeed(this.feedLast());
      },
    });
    this.trimmer = new FeedTrimmer({
      fsm: this.fsm,
      newest: () => this.checkpointer.newest(),
      keepEntries: this.opts.retention?.keepEntries ?? LIMITS.retainEntries,
      keepAgeMs: this.opts.retention?.keepAgeMs ?? LIMITS.retainAgeMs,
      everyMs: LIMITS.trimEveryMs,
      log: this.log,
    });
    this.transport = this.makeTransport();
    this.driver = this.makeDriver();
    this.admission.changed(this.admittedSet());
    this.transport.setPeers(this.addresses.peers(this.config));
    await this.transport.listen();
    if (this.store.clusterId() !== null || this.store.lastIndex() > 0) this.startRaft(this.store.clusterId());
    else this.startEmpty();
    this.ticker.start(performance.now());
    this.timers.push(setInterval(() => this.guarded(() => this.onTick()), this.timing.tickMs));
    this.log.info("node started", {
      dataDir: this.opts.dataDir,
      clusterId: this.store.clusterId(),
      applied: this.store.appliedIndex(),
      lastIndex: this.store.lastIndex(),
      openCheckedMs: openMs, // opening the database, PRAGMA quick_check included
    });
  }

  private makeTransport(): PeerTransport<PeerPayload> {
    return new PeerTransport<PeerPayload>({
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
  }

  /** A new certificate and key (checked by the caller) for new peer connections, both ways. */
  updateTls(tls: PeerTls): void {
    this.transport.updateTls(tls);
  }

  /** Stops the node; a leader first hands leadership to the most up-to-date voter. */
  async stop(opts: { transfer?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    if (opts.transfer !== false && this.raft?.view.role === "leader" && this.handover.otherVoters().length > 0) {
      try {
        const t = await this.transferLeader({ timeoutMs: this.timing.transferTimeoutMs });
        this.log.info(`handed leadership to ${t.to} before stopping`, { term: this.raft?.view.term });
      } catch (e) {
        this.log.warn("could not hand leadership over before stopping", { error: e });
      }
    }
    this.stopping = true;
    this.driver?.stop();
    this.founding?.stop();
    for (const t of this.timers) clearInterval(t);
    this.snapshots?.close();
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

  /** This node is out of the cluster: it stops taking part, and its data is marked so it never rejoins by accident. */
  private markRemoved(index: number, how: string): void {
    if (this.removed || this.stopping) return;
    this.removed = true;
    try {
      this.store.setRemovedAt(index);
    } catch (e) {
      if (!(e instanceof DiskFullError)) throw e;
      this.log.error(`could not record the removal in ${this.store.path}: the disk is full; this process still takes no part`);
    }
    const committed = this.raft?.view.commit ?? 0;
    if (committed > index) how += `; catching up to index ${committed}, a later configuration may add it back`;
    this.log.warn(
      `this node was removed from the cluster (${how}): it no longer takes part; its data stays in ${this.opts.dataDir} ` +
        `and will not be used to rejoin (to add this node back, list it in the cluster file and start it with an empty data directory)`,
      { term: this.raft?.view.term },
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
    const timing = timingChange(this.timing, this.config.raft);
    if (timing) this.log.warn(`cluster file ${config.path}: ${timing}`);
    this.transport.setPeers(this.addresses.peers(this.config));
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
    });
    if (clusterId !== null) this.transport.setClusterId(clusterId);
    this.driver.attach(this.raft);
  }

  /** An empty data directory: found the cluster or wait to be joined (founding.ts). */
  private startEmpty(): void {
    this.founding = new Founding({
      id: this.id,
      log: this.log,
      store: this.store,
      apply: (entries, conf) => void this.applier.apply(entries, conf),
      config: () => this.config,
      probe: (f, ms) => this.calls.call(f, `probe of ${f}`, ms, (id) => this.transport.send(f, { t: "probe", id })) as Promise<ProbeAnswer>,
      settled: () => this.raft !== undefined || this.stopping,
      setWaiting: (reason) => {
        if (reason !== this.waitingReason) this.log.info(reason);
        this.waitingReason = reason;
      },
      startJoining: () => this.startRaft(null),
      onFounded: (clusterId) => {
        this.recordClusterName();
        this.waitingReason = "";
        this.startRaft(clusterId);
        this.raft!.campaign();
        this.schedule();
      },
      guarded: (fn) => this.guarded(fn),
      probeEveryMs: LIMITS.probeEveryMs,
    });
    this.founding.start();
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
        sendSnapshot: (m) => this.snapshots.send(m),
        setClusterId: (id) => this.transport.setClusterId(id),
      },
      fsm: { apply: (entries, conf) => this.applyDeferringSync(entries, conf) },
      snapshots: { install: (rd) => this.snapshots.install(rd) },
      hooks: {
        beforeReady: (raft) => this.hooks.startReadRound(raft),
        onApplied: (rd, results) => this.hooks.afterApply(rd, results),
        onAdvanced: (raft, rd) => this.hooks.afterReady(raft.view, rd),
        onDiskFull: (e) => {
          this.counters.diskFull++;
          this.diskFull.onFull(e.message, performance.now(), this.raft?.view.term);
        },
        onFatal: (e) => this.fatal(e),
      },
      readyRoundsPerTurn: LIMITS.readyRoundsPerTurn,
      persistWaitersMax: LIMITS.proposalsPendingMax,
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

  /** Whether cairn's own state machine (the feed) is the one applied. */
  private hasFeed(): boolean {
    return this.appliedFsm === this.fsm;
  }

  private feedLast(): number {
    return this.hasFeed() ? this.fsm.feedState().last : 0;
  }

  /** Ticks (ticker.ts), then what runs on a tick: disk retry, removal check, checkpoints, feed trimming, membership. */
  private onTick(): void {
    const now = performance.now();
    const t = this.ticker.tick(this.stopping ? undefined : this.raft, now);
    if (t.stalled) this.onStalled();
    this.diskFull.maybeRetry(now);
    const raft = this.raft;
    if (!raft || this.stopping) return;
    // A removed node takes no part, not even in elections.
    if (!this.removed) for (let i = 0; i < t.ticks; i++) raft.tick();
    this.removalCheck.tick(now);
    // Covers configurations that arrive without a confApplied event (a checkpoint installed).
    this.refreshAdmission();
    if (!this.diskFull.full) {
      this.checkpointer.maybeStart();
      if (this.hasFeed()) this.trimmer.maybeTrim(now);
    }
    if (raft.view.role === "leader" && now >= this.nextConvergeAt && !this.diskFull.full) {
      this.nextConvergeAt = now + LIMITS.convergeEveryMs;
      this.converger.step(raft, this.config);
    }
    this.schedule();
  }

  /** The stall detector (ticker.ts), before every input: a write, a read, a peer message. */
  private checkStall(): void {
    if (!this.stopping && this.ticker.checkStall(this.raft, performance.now())) this.onStalled();
  }

  private onStalled(): void {
    this.counters.stalls++;
    this.schedule();
  }

  // ---------------------------------------------------------------- peers

  /** Who may talk to this node now: members of the applied configuration and nodes the file lists, less revoked ones. */
  private admittedSet(): AdmittedSet {
    return this.admission.set({ conf: this.raft?.view.conf ?? this.store.confState(), config: this.config, appliedIndex: this.store.appliedIndex() });
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
    if (this.admission.changed(this.admittedSet())) this.transport.recheckPeers();
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
        return void this.answer(from, p.id, this.writes.propose({ bytes: p.cmd, wait: p.wait, timeoutMs: this.proposeTimeoutMs, mayForward: false }));
      case "xfer":
        return void this.answer(from, p.id, this.transferLeader({ to: p.to ?? undefined, forwarded: true }));
      case "probe":
        return void this.answer(from, p.id, Promise.resolve(this.probeAnswer()));
      case "resp":
        return this.calls.answer(from, p);
      default:
        return this.snapshots.onPayload(from, p);
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
    this.checkStall();
    if (m.from === raft.view.leader) this.lastLeaderContact = performance.now();
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
    const members = this.raft ? allMembers(this.raft.view.conf) : [];
    return { empty, clusterId: this.store.clusterId(), applied: this.store.appliedIndex(), members };
  }

  // ---------------------------------------------------------------- NodeApi

  async propose(cmd: Command, opts: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ProposeOutcome> {
    return this.writes.propose({ bytes: encodeCommand(cmd), wait: opts.wait ?? "applied", timeoutMs: opts.timeoutMs ?? this.proposeTimeoutMs, mayForward: true });
  }

  /**
   * For embedders: proposes opaque bytes to the state machine (forwarded to
   * the leader from a follower); "applied" resolves with what its apply()
   * returned for them.
   */
  async proposeData(data: Uint8Array, opts: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ProposeOutcome> {
    if (data.byteLength === 0) throw new BadRequestError("an empty proposal is the leader's no-op and cannot be applied: send at least one byte");
    return this.writes.propose({ bytes: data, wait: opts.wait ?? "applied", timeoutMs: opts.timeoutMs ?? this.proposeTimeoutMs, mayForward: true });
  }

  /** The core, if this node takes writes now; else why not. */
  private writable(): Raft {
    if (this.stopping) throw new StoppedError();
    const full = this.diskFull.error();
    if (full) throw full;
    if (!this.raft) throw new NoLeaderError(this.waitingReason || "this node has not joined a cluster yet");
    if (this.removed) throw new NoLeaderError(REMOVED_DETAIL);
    this.checkStall();
    return this.raft;
  }

  readBarrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping) return Promise.reject(new StoppedError());
    this.checkStall();
    if (this.removed) return Promise.reject(new NoLeaderError(REMOVED_DETAIL));
    if (!this.raft || this.raft.view.leader === NONE) return Promise.reject(new NoLeaderError());
    const p = this.reads.wait(opts.timeoutMs ?? this.readTimeoutMs);
    this.schedule();
    return p;
  }

  staleness(): Staleness {
    const commit = this.raft?.view.commit ?? this.store.hardState().commit;
    const contact = this.raft?.view.role === "leader" ? 0 : this.lastLeaderContact === null ? null : Math.round(performance.now() - this.lastLeaderContact);
    return { applied: this.store.appliedIndex(), commit, leaderContactMs: contact };
  }

  waitForFeed(after: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.feedWaiters.wait(after, this.feedLast(), timeoutMs, signal);
  }

  status(): NodeStatus {
    return buildStatus({
      id: this.id,
      raft: this.raft?.view,
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
    const conf = this.raft?.view.conf;
    if (!conf || conf.votersOutgoing.length > 0) return null;
    return shrinkHold({ voters: conf.voters, nodes: this.config.nodes, allowShrink: this.config.allowShrink });
  }

  private problems(): string[] {
    return problems({
      waiting: this.waitingReason,
      file: this.fileProblem,
      shrinkHeld: this.shrinkHeld(),
      timing: timingChange(this.timing, this.config.raft),
      diskFull: this.diskFull.error(),
      removed: this.removed,
      tls: this.opts.tlsHealth?.problems() ?? [],
    });
  }

  readiness(): { ready: boolean; reason: string } {
    return readiness({
      failure: this.failure,
      stopping: this.stopping,
      raft: this.raft?.view,
      waiting: this.waitingReason,
      diskFull: this.diskFull.full,
      applied: this.store.appliedIndex(),
    });
  }

  transferLeader(opts: { to?: string; timeoutMs?: number; forwarded?: boolean } = {}): Promise<{ from: string; to: string }> {
    return this.handover.transfer({ to: opts.to, timeoutMs: opts.timeoutMs ?? this.timing.transferTimeoutMs, forwarded: opts.forwarded });
  }

  metricsText(): string {
    return metricsText({ node: this, raft: this.raft?.view, store: this.store, transport: this.transport, counters: this.counters, diskFull: this.diskFull.full }) + (this.opts.tlsHealth?.metricsText() ?? "");
  }

  // ---------------------------------------------------------------- checkpoints (snapshots.ts)

  checkpoints(): Manifest[] {
    return this.snapshots.list();
  }

  checkpointFile(id: string): { manifest: Manifest; path: string } | null {
    return this.snapshots.file(id);
  }

  /** A checkpoint's file, checked against its manifest's SHA-256 first; a damaged one is discarded (ChecksumMismatchError). */
  verifiedCheckpointFile(id: string): Promise<{ manifest: Manifest; path: string } | null> {
    return this.snapshots.verifiedFile(id);
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
}

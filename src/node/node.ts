/**
 * CairnNode: the wiring of a real node. It opens the SQLite store (locked,
 * checked), the TLS peer transport and the timers, joins them to the Raft
 * core through the Ready loop (core.ts, driver.ts), and answers the HTTP
 * API's NodeApi. Each job around the loop is in a file of its own:
 * founding.ts, ticker.ts (ticks, stall detector), diskfull.ts, snapshots.ts
 * (checkpoint shipping and install), feedtrim.ts, handover.ts (leadership
 * transfer), writes.ts (proposals, forwarding), readyhooks.ts (what a Ready
 * settles), inbox.ts (what peers send), admission.ts and addresses.ts
 * (peers), removal.ts, status.ts (status, problems, readiness), fatal.ts.
 *
 * Bun's SQLite is synchronous, so a whole Ready is handled inside one
 * macrotask: nothing can step the core between ready() and advance().
 */
import { Checkpointer, DEFAULT_POLICY, workerRunner } from "../checkpoint/checkpointer.ts";
import type { Manifest } from "../checkpoint/manifest.ts";
import type { ClusterConfig } from "../discovery/load.ts";
import { shrinkHold } from "../discovery/plan.ts";
import { isFatalDbError, type FileLock } from "../platform/sqlite.ts";
import { allMembers, NONE, type Message, type Raft } from "../raft/index.ts";
import { CairnFsm } from "../statemachine/cairn.ts";
import { encodeCommand, type Command } from "../statemachine/commands.ts";
import { Applier, type Fsm } from "../statemachine/fsm.ts";
import type { RaftStore } from "../storage/store.ts";
import type { PeerTls } from "../transport/context.ts";
import { FaultHook } from "../transport/faults.ts";
import { PeerTransport, transportTimings } from "../transport/transport.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { AddressBook, ownAddressMove, selfListen } from "./addresses.ts";
import { Admission } from "./admission.ts";
import type { NodeApi, NodeStatus, ProposeOutcome, Staleness, WaitMode } from "./api.ts";
import type { ProbeAnswer } from "./bootstrap.ts";
import { NodeCore } from "./core.ts";
import { claimDataDir, lockDataDir, openCheckedStore } from "./datadir.ts";
import { DiskFull } from "./diskfull.ts";
import { BadRequestError, NoLeaderError, StoppedError } from "./errors.ts";
import { CrashOnly } from "./fatal.ts";
import { FeedTrimmer } from "./feedtrim.ts";
import { Founding } from "./founding.ts";
import { Handover } from "./handover.ts";
import { Inbox } from "./inbox.ts";
import { Converger, type ProbeReply } from "./membership.ts";
import { metricsText, type NodeCounters } from "./metrics.ts";
import { LIMITS, type CairnNodeOptions } from "./options.ts";
import { PeerCalls, type PeerPayload } from "./peer.ts";
import { ReadyHooks } from "./readyhooks.ts";
import { Removal } from "./removal.ts";
import { followersNeed, Snapshots } from "./snapshots.ts";
import { buildStatus, problems, readiness } from "./status.ts";
import { Ticker } from "./ticker.ts";
import { nodeTiming, timingChange, type NodeTiming } from "./timing.ts";
import { FeedWaiters, ProposalWaiters, ReadRounds } from "./waiters.ts";
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
  readonly counters: NodeCounters = { proposals: 0, forwarded: 0, applied: 0, readRounds: 0, stalls: 0, leaderChanges: 0, diskFull: 0, badPeerPayloads: 0, refusedPeerPayloads: 0 };
  private readonly proposals = new ProposalWaiters(LIMITS.proposalsPendingMax);
  private readonly reads: ReadRounds;
  private readonly feedWaiters = new FeedWaiters(LIMITS.feedWaitersMax);
  private readonly calls = new PeerCalls(LIMITS.peerCallsMax);
  private readonly crash: CrashOnly;
  private readonly ticker: Ticker;
  private readonly addresses: AddressBook;
  private readonly converger: Converger;
  private readonly removal: Removal;
  private readonly admission: Admission;
  private readonly diskFull: DiskFull;
  private readonly handover: Handover;
  private readonly writes: Writes;
  // Made at start, once the store is open:
  private store!: RaftStore;
  private lock: FileLock | null = null;
  private checkpointer!: Checkpointer;
  private snapshots!: Snapshots;
  private trimmer!: FeedTrimmer;
  private transport!: PeerTransport<PeerPayload>;
  private inbox!: Inbox;
  private core!: NodeCore;
  private founding: Founding | undefined;
  private timers: ReturnType<typeof setInterval>[] = [];
  private nextConvergeAt = 0;
  private lastLeaderContact: number | null = null;
  private stopping = false;
  private waitingReason = "";
  /** Why the cluster file on disk is being ignored (the watcher says), or null. */
  private fileProblem: string | null = null;

  constructor(private readonly opts: CairnNodeOptions) {
    this.id = opts.id;
    this.appliedFsm = opts.fsm ?? this.fsm;
    this.config = opts.config;
    this.log = opts.logger.with({ node: opts.id });
    this.timing = nodeTiming(opts.config.raft, { tickMs: opts.tickMs, stallMs: opts.stallMs });
    this.proposeTimeoutMs = opts.proposeTimeoutMs ?? 10_000;
    this.readTimeoutMs = opts.readTimeoutMs ?? 5_000;
    this.reads = new ReadRounds({ nodeId: opts.id, roundsMax: LIMITS.readRoundsMax, waitersMax: LIMITS.readersPerRoundMax });
    const ctx = { id: this.id, log: this.log, core: () => this.raft, schedule: () => this.schedule(), guarded: (fn: () => void) => this.guarded(fn), stopping: () => this.stopping };
    this.crash = new CrashOnly({ ...ctx, stop: () => this.stop({ transfer: false }), onFatal: opts.onFatal, tellWithinMs: LIMITS.fatalStopMs });
    this.ticker = new Ticker({ timing: this.timing, log: this.log });
    this.addresses = new AddressBook({ self: this.id, formerPeersMax: LIMITS.formerPeersMax });
    this.converger = new Converger({ log: this.log, catchUpLagMax: LIMITS.catchUpLagMax, contactTicksMax: this.timing.contactTicksMax });
    this.removal = new Removal({
      ...ctx,
      dataDir: opts.dataDir,
      store: () => this.store,
      silentMs: () => (this.lastLeaderContact === null ? Infinity : performance.now() - this.lastLeaderContact),
      ask: (peer) => this.ask(peer, { what: `membership check with ${peer}`, timeoutMs: this.timing.removalCheckMs, payload: (id) => ({ t: "probe", id }) }),
      checkEveryMs: this.timing.removalCheckMs,
    });
    this.admission = new Admission({
      conf: () => this.raft?.view.conf ?? this.store.confState(),
      config: () => this.config,
      appliedIndex: () => this.store.appliedIndex(),
      refusalInfo: () => this.probeAnswer(),
      recheck: () => this.transport.recheckPeers(),
    });
    this.diskFull = new DiskFull({ ...ctx, store: () => this.store, retryMs: LIMITS.diskRetryMs, rebuild: (lost) => this.rebuildCore(lost) });
    this.handover = new Handover({
      ...ctx,
      forward: (lead, to, timeoutMs) => this.ask(lead, { what: `leadership transfer via ${lead}`, timeoutMs, payload: (id) => ({ t: "xfer", id, to }) }) as Promise<{ from: string; to: string }>,
      watchersMax: LIMITS.transferWaitersMax,
    });
    this.writes = new Writes({
      ...ctx,
      writable: () => this.writable(),
      forward: (lead, cmd, wait, timeoutMs) => this.ask(lead, { what: `the write forwarded to leader ${lead}`, timeoutMs, payload: (id) => ({ t: "fwd", id, cmd, wait }) }) as Promise<ProposeOutcome>,
      beforePropose: opts.beforePropose,
      proposals: this.proposals,
      saved: { waitPersisted: (at) => this.core.driver.waitPersisted(at), persistWaiting: () => this.core.driver.persistWaiting(), persistWaitersMax: LIMITS.proposalsPendingMax },
      inFlightMax: LIMITS.proposalsPendingMax,
      counters: this.counters,
    });
  }

  /** The core now, if one runs. */
  private get raft(): Raft | undefined {
    return this.core?.raft;
  }

  /** A request to a peer, settled by its answer or by the deadline (peer.ts PeerCalls). */
  private ask(peer: string, r: { what: string; timeoutMs: number; payload: (id: number) => PeerPayload }): Promise<unknown> {
    return this.calls.call(peer, r.what, r.timeoutMs, (id) => this.transport.send(peer, r.payload(id)));
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    // Before anything reads or deletes a file in it: a second process on the same directory
    // would remove this one's temporary files and write into its log.
    this.lock = lockDataDir(this.opts.dataDir, `cairn node ${this.id}`);
    const t0 = performance.now();
    try {
      this.store = openCheckedStore({ dir: this.opts.dataDir, synchronous: this.opts.synchronous });
    } catch (e) {
      this.releaseLock();
      throw e;
    }
    try {
      await this.startOpened(Math.round(performance.now() - t0));
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
    const applier = new Applier({ store: this.store, fsm: this.appliedFsm });
    this.makeCheckpointParts();
    this.inbox = this.makeInbox();
    this.transport = this.makeTransport();
    this.core = this.makeCore(applier);
    this.admission.refresh();
    this.transport.setPeers(this.addresses.peers(this.config));
    await this.transport.listen();
    if (this.store.clusterId() !== null || this.store.lastIndex() > 0) this.core.start(this.store.clusterId());
    else this.startEmpty(applier);
    this.ticker.start(performance.now());
    this.timers.push(setInterval(() => this.guarded(() => this.onTick()), this.timing.tickMs));
    const s = this.store;
    // openCheckedMs: opening the database, PRAGMA quick_check included.
    this.log.info("node started", { dataDir: this.opts.dataDir, clusterId: s.clusterId(), applied: s.appliedIndex(), lastIndex: s.lastIndex(), openCheckedMs: openMs });
  }

  private makeCheckpointParts(): void {
    const ctx = { id: this.id, log: this.log, store: this.store, core: () => this.raft, schedule: () => this.schedule(), guarded: (fn: () => void) => this.guarded(fn) };
    this.checkpointer = new Checkpointer({
      ...ctx,
      dataDir: this.opts.dataDir,
      policy: { ...DEFAULT_POLICY, ...this.opts.checkpoints },
      onFatal: (e) => this.fatal(e),
      clusterId: () => this.store.clusterId(),
      run: this.opts.checkpointRunner ?? workerRunner(),
      followersNeed: () => followersNeed(this.raft?.view, this.id),
    });
    this.snapshots = new Snapshots({
      ...ctx,
      checkpointer: this.checkpointer,
      transfer: this.opts.transfer,
      send: (to, p) => this.transport.send(to, p),
      onBadPayload: () => this.counters.badPeerPayloads++,
      onInstalled: (index) => {
        this.proposals.skippedThrough(index);
        this.feedWaiters.onFeed(this.feedLast());
      },
    });
    const retention = this.opts.retention;
    this.trimmer = new FeedTrimmer({ ...ctx, fsm: this.fsm, newest: () => this.checkpointer.newest(), keepEntries: retention?.keepEntries ?? LIMITS.retainEntries, keepAgeMs: retention?.keepAgeMs ?? LIMITS.retainAgeMs, everyMs: LIMITS.trimEveryMs });
  }

  private makeInbox(): Inbox {
    return new Inbox({
      id: this.id,
      log: this.log,
      counters: this.counters,
      admitted: () => this.admission.current(),
      stopping: () => this.stopping,
      send: (to, p) => this.transport.send(to, p),
      raft: (m) => this.onRaftMessage(m),
      forwarded: (bytes, wait) => this.writes.propose({ bytes, wait, timeoutMs: this.proposeTimeoutMs, mayForward: false }),
      transfer: (to) => this.transferLeader({ to, forwarded: true }),
      probe: () => this.probeAnswer(),
      calls: this.calls,
      snapshots: this.snapshots,
    });
  }

  private makeTransport(): PeerTransport<PeerPayload> {
    return new PeerTransport<PeerPayload>({
      nodeId: this.id,
      clusterId: this.store.clusterId(),
      listen: this.opts.peerListen ?? selfListen(this.config, this.id),
      tls: this.opts.tls,
      logger: this.log,
      onMessage: (from, p) => this.guarded(() => this.inbox.onPayload(from, p)),
      admit: (p) => this.admission.admit(p),
      onRefusedBy: (e) => this.guarded(() => this.removal.onRefusedBy(e)),
      // Dead connections are found and redialled within about an election timeout of this cluster.
      ...transportTimings(this.timing.raft),
      faults: this.opts.testFaultsFile === undefined ? undefined : new FaultHook(this.opts.testFaultsFile, this.id, this.log),
    });
  }

  /** The core and its Ready loop over this node's store, transport, state machine and checkpoint files. */
  private makeCore(applier: Applier): NodeCore {
    const hooks = new ReadyHooks({
      id: this.id,
      log: this.log,
      store: this.store,
      proposals: this.proposals,
      reads: this.reads,
      counters: this.counters,
      feedMoved: () => this.feedWaiters.onFeed(this.feedLast()),
      calls: this.calls,
      snapshots: this.snapshots,
      handover: this.handover,
      removal: this.removal,
      onLeaderKnown: () => (this.waitingReason = ""),
      recordClusterName: () => this.recordClusterName(),
      confApplied: () => {
        this.nextConvergeAt = 0;
        this.admission.refresh();
      },
    });
    return new NodeCore({
      id: this.id,
      store: this.store,
      applier,
      timing: this.timing,
      readOnly: this.opts.readOnly ?? "safe",
      synchronous: this.opts.synchronous,
      transport: { send: (m) => this.transport.send(m.to, { t: "raft", m }), setClusterId: (id) => this.transport.setClusterId(id) },
      snapshots: this.snapshots,
      hooks,
      onDiskFull: (e) => {
        this.counters.diskFull++;
        this.diskFull.onFull(e.message, performance.now(), this.raft?.view.term);
      },
      onFatal: (e) => this.fatal(e),
      readyRoundsPerTurn: LIMITS.readyRoundsPerTurn,
      persistWaitersMax: LIMITS.proposalsPendingMax,
    });
  }

  /** A full disk refused a Ready: the entries past the durable log are lost with the old core; a new one starts from the disk. */
  private rebuildCore(lost: Error): void {
    this.proposals.failAbove(this.store.lastIndex(), lost);
    this.core.driver.failPersistWaiters(lost);
    this.core.start(this.store.clusterId());
  }

  /** An empty data directory: found the cluster or wait to be joined (founding.ts). */
  private startEmpty(applier: Applier): void {
    this.founding = new Founding({
      id: this.id,
      log: this.log,
      store: this.store,
      apply: (entries, conf) => void applier.apply(entries, conf),
      config: () => this.config,
      probe: (f, timeoutMs) => this.ask(f, { what: `probe of ${f}`, timeoutMs, payload: (id) => ({ t: "probe", id }) }) as Promise<ProbeAnswer>,
      settled: () => this.raft !== undefined || this.stopping,
      setWaiting: (reason) => {
        if (reason !== this.waitingReason) this.log.info(reason);
        this.waitingReason = reason;
      },
      startJoining: () => this.core.start(null),
      onFounded: (clusterId) => {
        this.recordClusterName();
        this.waitingReason = "";
        this.core.start(clusterId).campaign();
        this.schedule();
      },
      guarded: (fn) => this.guarded(fn),
      probeEveryMs: LIMITS.probeEveryMs,
    });
    this.founding.start();
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
    this.core?.driver.stop();
    this.founding?.stop();
    for (const t of this.timers) clearInterval(t);
    this.snapshots?.close();
    const stopped = new StoppedError();
    this.proposals.failAll(stopped);
    this.core?.driver.failPersistWaiters(stopped);
    this.reads.failAll(stopped);
    this.feedWaiters.failAll();
    this.calls.failAll(stopped);
    await this.transport?.close();
    this.store?.close();
    this.releaseLock();
    this.log.info("node stopped");
  }

  /** An error the node cannot go on after: it stops serving at once, and the embedder is told (fatal.ts). */
  fatal(err: unknown): void {
    this.crash.fatal(err);
  }

  /** Why this node stopped by itself (fatal()), or null. */
  failed(): Error | null {
    return this.crash.failed;
  }

  private guarded(fn: () => void): void {
    this.crash.guarded(fn);
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
    const before = this.config;
    this.config = config;
    const held = this.shrinkHeld();
    if (held) this.log.warn(`cluster file ${config.path}: membership change held: ${held}`);
    const timing = timingChange(this.timing, this.config.raft);
    if (timing) this.log.warn(`cluster file ${config.path}: ${timing}`);
    this.transport.setPeers(this.addresses.peers(this.config));
    this.admission.refresh();
    this.nextConvergeAt = 0;
    const move = this.opts.peerListen ? null : ownAddressMove(before, config, this.id);
    // This node's own peer address changed in the file: listen there from now on, no restart.
    if (move) {
      this.transport.moveListener({ host: move.to.peerHost, port: move.to.peerPort }).then(
        () => this.log.info(`this node's peer address changed in the cluster file: now listening on ${move.to.peer} (was ${move.from.peer})`),
        (e: unknown) =>
          this.log.error(`this node's peer address changed in the cluster file to ${move.to.peer}, but it cannot listen there (${(e as Error).message}); still listening on ${move.from.peer}: free the port or fix the file`),
      );
    }
  }

  // ---------------------------------------------------------------- the loop

  private schedule(): void {
    if (this.stopping) return;
    this.core?.driver.schedule();
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
    if (!this.removal.removed) for (let i = 0; i < t.ticks; i++) raft.tick();
    this.removal.tick(now);
    // Covers configurations that arrive without a confApplied event (a checkpoint installed).
    this.admission.refresh();
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

  /** A checked Raft message from a peer (inbox.ts). */
  private onRaftMessage(m: Message): void {
    const raft = this.raft;
    if (!raft) return;
    this.checkStall();
    if (m.from === raft.view.leader) this.lastLeaderContact = performance.now();
    raft.step(m);
    this.schedule();
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
    if (this.removal.removed) throw new NoLeaderError(REMOVED_DETAIL);
    this.checkStall();
    return this.raft;
  }

  readBarrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping) return Promise.reject(new StoppedError());
    this.checkStall();
    if (this.removal.removed) return Promise.reject(new NoLeaderError(REMOVED_DETAIL));
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
    const fsm = this.hasFeed() ? this.fsm : null;
    const s = { id: this.id, raft: this.raft?.view, store: this.store, fsm, config: this.config, tickMs: this.timing.tickMs };
    return buildStatus({ ...s, removed: this.removal.removed, stopping: this.stopping, problems: this.problems(), version: VERSION });
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
    const timing = timingChange(this.timing, this.config.raft);
    const tls = this.opts.tlsHealth?.problems() ?? [];
    return problems({ waiting: this.waitingReason, file: this.fileProblem, shrinkHeld: this.shrinkHeld(), timing, diskFull: this.diskFull.error(), removed: this.removal.removed, tls });
  }

  readiness(): { ready: boolean; reason: string } {
    const r = { failure: this.crash.failed, stopping: this.stopping, raft: this.raft?.view, waiting: this.waitingReason };
    return readiness({ ...r, diskFull: this.diskFull.full, applied: this.store.appliedIndex() });
  }

  transferLeader(opts: { to?: string; timeoutMs?: number; forwarded?: boolean } = {}): Promise<{ from: string; to: string }> {
    return this.handover.transfer({ to: opts.to, timeoutMs: opts.timeoutMs ?? this.timing.transferTimeoutMs, forwarded: opts.forwarded });
  }

  metricsText(): string {
    const m = { node: this, raft: this.raft?.view, store: this.store, transport: this.transport, counters: this.counters, diskFull: this.diskFull.full };
    return metricsText(m) + (this.opts.tlsHealth?.metricsText() ?? "");
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

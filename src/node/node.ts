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
import { DEFAULT_POLICY, workerRunner } from "../checkpoint/checkpointer.ts";
import type { Manifest } from "../checkpoint/manifest.ts";
import type { ClusterConfig } from "../discovery/load.ts";
import { DiskFullError as DbDiskFullError, type FileLock } from "../platform/sqlite.ts";
import type { Message, Raft } from "../raft/index.ts";
import { CairnFsm } from "../statemachine/cairn.ts";
import { encodeCommand, type Command } from "../statemachine/commands.ts";
import { Applier, type Fsm } from "../statemachine/fsm.ts";
import type { RaftStore } from "../storage/store.ts";
import type { PeerTls } from "../transport/context.ts";
import { FaultHook } from "../transport/faults.ts";
import { PeerTransport, transportTimings } from "../transport/transport.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { AddressBook, followOwnAddress, ownAddressMove, selfListen } from "./addresses.ts";
import { Admission } from "./admission.ts";
import type { NodeApi, NodeStatus, ProposeOutcome, Staleness, WaitMode } from "./api.ts";
import type { ProbeAnswer } from "./bootstrap.ts";
import { ClusterFile } from "./clusterfile.ts";
import { NodeCore } from "./core.ts";
import { claimDataDir, lockDataDir, openCheckedStore } from "./datadir.ts";
import { DiskFull } from "./diskfull.ts";
import { BadRequestError, NoLeaderError, StoppedError } from "./errors.ts";
import { CrashOnly } from "./fatal.ts";
import { FeedTrimmer } from "./feedtrim.ts";
import { Founding, Waiting } from "./founding.ts";
import { Handover } from "./handover.ts";
import { Inbox } from "./inbox.ts";
import { Converger } from "./membership.ts";
import { metricsText, type NodeCounters } from "./metrics.ts";
import { LIMITS, type CairnNodeOptions } from "./options.ts";
import { PeerCalls, type PeerPayload } from "./peer.ts";
import { ReadyHooks } from "./readyhooks.ts";
import { Removal } from "./removal.ts";
import { Snapshots } from "./snapshots.ts";
import { buildStatus, problems, readiness } from "./status.ts";
import { Ticker } from "./ticker.ts";
import { nodeTiming, type NodeTiming } from "./timing.ts";
import { Reads } from "./reads.ts";
import { FeedWaiters, ProposalWaiters, ReadRounds } from "./waiters.ts";
import { Writes } from "./writes.ts";
import { checkDataDirRole, dataNodes, isWitnessIn, WITNESS_FSM, WitnessRole, witnessIds } from "./witness.ts";

export type { CairnNodeOptions } from "./options.ts";

export class CairnNode implements NodeApi {
  readonly id: string;
  /** cairn's own state machine: its queries serve the HTTP API (unused when an embedder brings its own). */
  readonly fsm = new CairnFsm();
  private readonly appliedFsm: Fsm;
  private readonly file: ClusterFile;
  private readonly log: Logger;
  /** Every duration derived from the file's raft section, fixed at start (timing.ts). */
  readonly timing: NodeTiming;
  private readonly proposeTimeoutMs: number;
  readonly counters: NodeCounters = { proposals: 0, forwarded: 0, applied: 0, readRounds: 0, stalls: 0, leaderChanges: 0, diskFull: 0, badPeerPayloads: 0, refusedPeerPayloads: 0 };
  private readonly proposals = new ProposalWaiters(LIMITS.proposalsPendingMax);
  private readonly reads: Reads;
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
  private readonly trimmer: FeedTrimmer;
  // Made at start, once the store is open:
  private store!: RaftStore;
  private lock: FileLock | null = null;
  private snapshots!: Snapshots;
  private transport!: PeerTransport<PeerPayload>;
  private inbox!: Inbox;
  private core!: NodeCore;
  private founding: Founding | undefined;
  private timers: ReturnType<typeof setInterval>[] = [];
  private stopping = false;
  private readonly waiting: Waiting;
  /** Witness (role "witness" in the file, fixed at start): no state machine; see witness.ts. */
  private readonly isWitness: boolean;
  /** Made at start on a witness; null on a data node. */
  private witnessRole: WitnessRole | null = null;

  constructor(private readonly opts: CairnNodeOptions) {
    this.id = opts.id;
    this.isWitness = isWitnessIn(opts.config, opts.id);
    this.appliedFsm = opts.fsm ?? (this.isWitness ? WITNESS_FSM : this.fsm);
    this.log = opts.logger.with({ node: opts.id });
    this.waiting = new Waiting(this.log);
    this.timing = nodeTiming(opts.config.raft, { tickMs: opts.tickMs, stallMs: opts.stallMs });
    this.file = new ClusterFile(opts.config, { log: this.log, timing: this.timing, conf: () => this.raft?.view.conf });
    this.proposeTimeoutMs = opts.proposeTimeoutMs ?? 10_000;
    const ctx = this.ctx;
    const rounds = new ReadRounds({ nodeId: opts.id, roundsMax: LIMITS.readRoundsMax, waitersMax: LIMITS.readersPerRoundMax });
    const readTimeoutMs = opts.readTimeoutMs ?? 5_000;
    this.reads = new Reads({ ...ctx, rounds, store: () => this.store, removedError: () => this.removal.error(), checkStall: () => this.checkStall(), counters: this.counters, timeoutMs: readTimeoutMs });
    this.crash = new CrashOnly({ ...ctx, stop: () => this.stop({ transfer: false }), onFatal: opts.onFatal, tellWithinMs: LIMITS.fatalStopMs });
    this.ticker = new Ticker({ timing: this.timing, log: this.log });
    const keep = { keepEntries: opts.retention?.keepEntries ?? LIMITS.retainEntries, keepAgeMs: opts.retention?.keepAgeMs ?? LIMITS.retainAgeMs };
    this.trimmer = new FeedTrimmer({ ...keep, fsm: this.fsm, newest: () => this.snapshots.checkpointer.newest(), waiting: (w) => this.snapshots.checkpointer.setFeedWaiting(w), everyMs: LIMITS.trimEveryMs, log: this.log });
    this.addresses = new AddressBook({ self: this.id, formerPeersMax: LIMITS.formerPeersMax });
    this.converger = new Converger({ log: this.log, catchUpLagMax: LIMITS.catchUpLagMax, contactTicksMax: this.timing.contactTicksMax, everyMs: LIMITS.convergeEveryMs });
    this.removal = new Removal({
      ...ctx,
      dataDir: opts.dataDir,
      store: () => this.store,
      silentMs: () => this.reads.silentMs(performance.now()),
      ask: (peer) => this.ask(peer, { what: `membership check with ${peer}`, timeoutMs: this.timing.removalCheckMs, payload: (id) => ({ t: "probe", id }) }),
      checkEveryMs: this.timing.removalCheckMs,
    });
    this.admission = new Admission({
      conf: () => this.raft?.view.conf ?? this.store.confState(),
      config: () => this.file.config,
      appliedIndex: () => this.store.appliedIndex(),
      refusalInfo: () => this.removal.probeAnswer(),
      recheck: () => this.transport.recheckPeers(),
    });
    this.diskFull = new DiskFull({ ...ctx, counters: this.counters, store: () => this.store, retryMs: LIMITS.diskRetryMs, rebuild: (lost) => this.rebuildCore(lost) });
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
      witness: this.isWitness,
      inFlightMax: LIMITS.proposalsPendingMax,
      counters: this.counters,
    });
  }

  /** What most parts take of the node, for their construction (each part's options name what it uses). */
  private get ctx() {
    return { id: this.id, log: this.log, core: () => this.raft, schedule: () => this.schedule(), guarded: (fn: () => void) => this.guarded(fn), stopping: () => this.stopping };
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
    claimDataDir(this.store, { id: this.id, dataDir: this.opts.dataDir, config: this.file.config });
    checkDataDirRole(this.store, this.isWitness);
    if (this.isWitness) this.witnessRole = new WitnessRole({ store: this.store, log: this.log });
    const applier = new Applier({ store: this.store, fsm: this.appliedFsm });
    this.snapshots = this.makeSnapshots();
    this.inbox = this.makeInbox();
    this.transport = this.makeTransport();
    this.core = this.makeCore(applier);
    this.admission.refresh();
    this.transport.setPeers(this.addresses.peers(this.file.config));
    await this.transport.listen();
    if (this.store.clusterId() !== null || this.store.lastIndex() > 0) this.core.start(this.store.clusterId());
    else this.startEmpty(applier);
    this.ticker.start(performance.now());
    this.timers.push(setInterval(() => this.guarded(() => this.onTick()), this.timing.tickMs));
    const s = this.store;
    // openCheckedMs: opening the database, PRAGMA quick_check included.
    this.log.info("node started", { dataDir: this.opts.dataDir, clusterId: s.clusterId(), applied: s.appliedIndex(), lastIndex: s.lastIndex(), openCheckedMs: openMs });
  }

  private makeSnapshots(): Snapshots {
    return new Snapshots({
      ...this.ctx,
      store: this.store,
      dataDir: this.opts.dataDir,
      policy: { ...DEFAULT_POLICY, ...this.opts.checkpoints },
      run: this.opts.checkpointRunner ?? workerRunner(),
      onFatal: (e) => this.fatal(e),
      transfer: this.opts.transfer,
      send: (to, p) => this.transport.send(to, p),
      onBadPayload: () => this.counters.badPeerPayloads++,
      witness: this.witnessRole,
      onInstalled: (index) => {
        this.proposals.skippedThrough(index);
        this.feedWaiters.onFeed(this.feedLast());
      },
    });
  }

  private makeInbox(): Inbox {
    return new Inbox({
      ...this.ctx,
      counters: this.counters,
      admitted: () => this.admission.current(),
      send: (to, p) => this.transport.send(to, p),
      raft: (m) => this.onRaftMessage(m),
      forwarded: (bytes, wait) => this.writes.propose({ bytes, wait, timeoutMs: this.proposeTimeoutMs, mayForward: false }),
      transfer: (to) => this.transferLeader({ to, forwarded: true }),
      probe: () => this.removal.probeAnswer(),
      calls: this.calls,
      snapshots: this.snapshots,
    });
  }

  private makeTransport(): PeerTransport<PeerPayload> {
    return new PeerTransport<PeerPayload>({
      nodeId: this.id,
      clusterId: this.store.clusterId(),
      listen: this.opts.peerListen ?? selfListen(this.file.config, this.id),
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
      feedMoved: () => this.wakeFeedReaders(),
      calls: this.calls,
      snapshots: this.snapshots,
      handover: this.handover,
      removal: this.removal,
      onLeaderKnown: () => this.waiting.set(""),
      recordClusterName: () => this.recordClusterName(),
      confApplied: () => {
        this.converger.soon();
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
      parallelAppends: this.opts.parallelAppends !== false,
      writesInFlightMax: this.opts.writesInFlightMax,
      transport: { send: (m) => this.transport.send(m.to, { t: "raft", m }), setClusterId: (id) => this.transport.setClusterId(id) },
      snapshots: this.snapshots,
      hooks,
      onDiskFull: (e) => this.diskFull.onFull(e.message, performance.now(), this.raft?.view.term),
      onFatal: (e) => this.fatal(e),
      readyRoundsPerTurn: LIMITS.readyRoundsPerTurn,
      persistWaitersMax: LIMITS.proposalsPendingMax,
      witnesses: () => witnessIds(this.file.config),
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
      ...this.ctx,
      store: this.store,
      apply: (entries, conf) => void applier.apply(entries, conf),
      config: () => this.file.config,
      probe: (f, timeoutMs) => this.ask(f, { what: `probe of ${f}`, timeoutMs, payload: (id) => ({ t: "probe", id }) }) as Promise<ProbeAnswer>,
      settled: () => this.raft !== undefined || this.stopping,
      waiting: this.waiting,
      startJoining: () => this.core.start(null),
      onFounded: (clusterId) => {
        this.recordClusterName();
        this.waiting.set("");
        this.core.start(clusterId).campaign();
        this.schedule();
      },
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
    if (opts.transfer !== false) await this.handover.beforeStop(this.timing.transferTimeoutMs, this.log);
    this.stopping = true;
    this.core?.driver.stop();
    this.founding?.stop();
    for (const t of this.timers) clearInterval(t);
    this.snapshots?.close();
    const stopped = new StoppedError();
    for (const w of [this.proposals, this.reads, this.calls]) w.failAll(stopped);
    this.core?.driver.failPersistWaiters(stopped);
    this.feedWaiters.failAll();
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
    if (this.store.clusterName() === null) this.store.setClusterName(this.file.config.cluster);
  }

  /** A new version of the cluster file (clusterfile.ts): addresses take effect at once, membership converges. */
  updateConfig(config: ClusterConfig): void {
    const before = this.file.update(config);
    if (!before) return;
    this.raft?.setWitnesses(witnessIds(config));
    this.transport.setPeers(this.addresses.peers(config));
    this.admission.refresh();
    this.converger.soon();
    const move = this.opts.peerListen ? null : ownAddressMove(before, config, this.id);
    if (move) followOwnAddress({ move, transport: this.transport, log: this.log });
  }

  /** The watcher's reason for ignoring the file on disk (null: the file is in force). */
  setFileProblem(problem: string | null): void {
    this.file.problem = problem;
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
    if (!this.diskFull.full && this.witnessRole) this.compactWitness(raft);
    else if (!this.diskFull.full) {
      this.snapshots.checkpointer.maybeStart();
      if (this.hasFeed()) this.trimmer.maybeTrim(now);
    }
    // A witness leads only to hand leadership to a data node: membership is a data leader's work.
    if (!this.diskFull.full && !this.isWitness) this.converger.maybeStep(raft, this.file.config, now);
    this.schedule();
  }

  private compactWitness(raft: Raft): void {
    try {
      this.witnessRole!.compact(raft.view);
    } catch (e) {
      // On a tick, where a throw would take the node down; the next tick tries again.
      if (!(e instanceof DbDiskFullError)) throw e;
      this.log.warn(`witness: log not compacted this time (${e.message})`);
    }
  }

  /** For the API: on a witness, the data nodes clients should ask instead; null on a data node. */
  witness(): { dataNodes: { id: string; api: string }[] } | null {
    return this.isWitness ? { dataNodes: dataNodes(this.file.config) } : null;
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
    if (m.from === raft.view.leader) this.reads.leaderContact(performance.now());
    raft.step(m);
    this.schedule();
  }

  // ---------------------------------------------------------------- NodeApi

  async propose(cmd: Command, opts: { wait?: WaitMode; timeoutMs?: number } = {}): Promise<ProposeOutcome> {
    return this.writes.propose({ bytes: encodeCommand(cmd), wait: opts.wait ?? "applied", timeoutMs: opts.timeoutMs ?? this.proposeTimeoutMs, mayForward: true });
  }

  private feedWakeDue = false;

  /**
   * Feed long polls and streams learn of new changes in a later turn, once per turn: the writers
   * whose entries were just applied are answered first (a thousand readers woken in the same turn
   * would interleave their work with the writers' answers and delay them all).
   */
  private wakeFeedReaders(): void {
    if (this.feedWakeDue) return;
    this.feedWakeDue = true;
    setImmediate(() => {
      this.feedWakeDue = false;
      this.feedWaiters.onFeed(this.feedLast());
    });
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
    if (!this.raft) throw new NoLeaderError(this.waiting.reason || "this node has not joined a cluster yet");
    const removed = this.removal.error();
    if (removed) throw removed;
    this.checkStall();
    return this.raft;
  }

  readBarrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.reads.barrier(opts.timeoutMs);
  }

  staleness(): Staleness {
    return this.reads.staleness(performance.now());
  }

  waitForFeed(after: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.feedWaiters.wait(after, this.feedLast(), timeoutMs, signal);
  }

  status(): NodeStatus {
    const fsm = this.hasFeed() ? this.fsm : null;
    const s = { id: this.id, raft: this.raft?.view, store: this.store, fsm, config: this.file.config, tickMs: this.timing.tickMs };
    const checkpointIndex = this.snapshots?.checkpointer.newestIndex() ?? 0;
    return buildStatus({ ...s, removed: this.removal.removed, stopping: this.stopping, problems: this.problems(), version: VERSION, checkpointIndex });
  }

  private problems(): string[] {
    const f = this.file;
    const tls = this.opts.tlsHealth?.problems() ?? [];
    const witnessHeld = (this.raft && this.witnessRole?.problem(this.raft.view)) ?? null;
    const p = { waiting: this.waiting.reason, file: f.problem, shrinkHeld: f.shrinkHeld(), timing: f.timingProblem(), diskFull: this.diskFull.error() };
    return problems({ ...p, removed: this.removal.removed, witnessHeld, tls });
  }

  readiness(): { ready: boolean; reason: string } {
    const r = { failure: this.crash.failed, stopping: this.stopping, raft: this.raft?.view, waiting: this.waiting.reason };
    return readiness({ ...r, diskFull: this.diskFull.full, applied: this.store.appliedIndex() });
  }

  transferLeader(opts: { to?: string; timeoutMs?: number; forwarded?: boolean } = {}): Promise<{ from: string; to: string }> {
    return this.handover.transfer({ to: opts.to, timeoutMs: opts.timeoutMs ?? this.timing.transferTimeoutMs, forwarded: opts.forwarded });
  }

  metricsText(): string {
    const m = { node: this, raft: this.raft?.view, store: this.store, transport: this.transport, counters: this.counters, checkpoints: this.snapshots?.checkpointer.counts, diskFull: this.diskFull.full };
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
    return this.snapshots.create();
  }
}

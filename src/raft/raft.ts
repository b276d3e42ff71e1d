/**
 * The Raft core: a pure, deterministic state machine in the style of etcd's
 * raft library. Inputs: tick(), step(message), propose(), readIndex(),
 * transferLeadership(), proposeConfChange(). Output: a Ready (see types.ts)
 * that the driver persists, sends and applies before calling advance().
 *
 * No I/O, no clocks, no randomness except the seeded Rng passed in.
 *
 * Section references are to the Raft paper (Ongaro & Ousterhout 2014, "§5.x")
 * and Ongaro's thesis (2014, "thesis §x.y").
 */
import { assert } from "../util/assert.ts";
import { applyConfChange, confEquals, isJoint } from "./confchange.ts";
import { CompactedError, ConfChangeError, NotLeaderError, ProposalDroppedError, UnavailableError } from "./errors.ts";
import { RaftLog } from "./log.ts";
import type { Progress } from "./progress.ts";
import { jointVote } from "./quorum.ts";
import { ReadOnly } from "./readonly.ts";
import type { Rng } from "./rng.ts";
import type { LogStorage } from "./storage.ts";
import { Tracker } from "./tracker.ts";
import { dataVoterMatchMin, handOffTarget, WITNESS_NO_SNAPSHOT } from "./witness.ts";
import {
  CAMPAIGN_TRANSFER,
  MESSAGE_DEFAULTS,
  entryBytes,
  NONE,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type RaftEvent,
  type ReadState,
  type Ready,
  type Role,
  type SnapshotMeta,
  type SoftState,
} from "./types.ts";

export type ReadOnlyMode = "safe" | "lease";

/**
 * Known protocol bugs that the simulator must be able to find. Tests only:
 * they are switched on through TestRaft (testing.ts), which index.ts does
 * not export; the production surface has no way to set them.
 */
export interface UnsafeBugs {
  /** Grant votes without the election restriction's up-to-date check (§5.4.1). */
  readonly voteWithoutLogCheck?: boolean;
  /** Commit entries of earlier terms by counting replicas (the Figure 8 bug, §5.4.2). */
  readonly commitOldTermByCount?: boolean;
  /** A witness compacts up to its commit, ignoring what the data voters hold (breaks the witness rule, witness.ts). */
  readonly witnessCompactsCommitted?: boolean;
}

export interface RaftConfig {
  readonly id: NodeId;
  /** null: not known yet (a joining node); adopted from the first leader message. */
  readonly clusterId: string | null;
  readonly storage: LogStorage;
  readonly rng: Rng;
  /** The last index the state machine has applied (restart). */
  readonly applied?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /**
   * "lease" answers reads without a heartbeat round while a quorum
   * acknowledged a heartbeat sent less than electionTicks - leaseDriftTicks
   * ago. Clock assumption: no node's ticks run slower than the leader's by
   * more than leaseDriftTicks per election timeout.
   */
  readonly readOnly?: ReadOnlyMode;
  readonly leaseDriftTicks?: number;
  readonly msgBytesMax?: number;
  readonly inflightMax?: number;
  /** Bytes of entries in flight to one follower at most (plus one append): bounds a catch-up's memory. */
  readonly inflightBytesMax?: number;
  readonly uncommittedBytesMax?: number;
  readonly readyCommittedBytesMax?: number;
  readonly pendingReadsMax?: number;
  readonly eventsMax?: number;
  /**
   * false: a node with an empty log (never written, or wiped) refuses to vote.
   * A wiped voter has forgotten its log and its vote, so its vote could elect
   * a candidate missing committed entries; it votes again once a leader has
   * sent it data. cairn sets false; the default true suits direct voter adds.
   */
  readonly emptyNodeVotes?: boolean;
  /** Voters that keep no state machine (witness.ts); this node is one if its id is listed. Updated with setWitnesses(). */
  readonly witnesses?: readonly NodeId[];
  /**
   * Asynchronous storage writes (etcd raft's AsyncStorageWrites, thesis
   * §10.2.1): advance() no longer means "the Ready's entries are durable";
   * the driver reports that with persisted() once the write is on disk. The
   * leader counts itself toward the commit only for entries reported
   * persisted, so it may send its appends before (or while) its own write is
   * durable; committed entries are handed out to apply only once persisted
   * here. Default false: advance() reports the Ready's writes durable, and
   * the leader counts its entries at append.
   */
  readonly asyncStorageWrites?: boolean;
}

const DEFAULTS = {
  electionTicks: 10,
  heartbeatTicks: 1,
  msgBytesMax: 1 << 20,
  inflightMax: 256,
  inflightBytesMax: 8 << 20,
  uncommittedBytesMax: 64 << 20,
  readyCommittedBytesMax: 8 << 20,
  pendingReadsMax: 4096,
  eventsMax: 256,
  leaseDriftTicks: 1,
};

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: string;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
  /** Ticks since the leader last heard from this member (-1: never). */
  readonly ticksSinceContact: number;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly clusterId: string | null;
  readonly term: number;
  readonly vote: NodeId;
  readonly role: Role;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly conf: ConfState;
  readonly leadTransferee: NodeId;
  /** Only on the leader. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}

/**
 * What code outside the core reads of it: live and read-only (each read is the
 * core's state at that moment; nothing here changes it). The node reads term,
 * role, leader, configuration, commit and progress through this, never
 * through the core's own fields.
 */
export interface RaftView {
  readonly id: NodeId;
  readonly term: number;
  readonly role: Role;
  readonly leader: NodeId;
  readonly commit: number;
  readonly lastIndex: number;
  readonly conf: ConfState;
  isVoter(id: NodeId): boolean;
  voterIds(): NodeId[];
  /** Whether `id` (default this node) is a witness voter (witness.ts). */
  isWitness(id?: NodeId): boolean;
  /** On a witness: the index its log may be compacted to now (witness.ts rule 1); 0 on a data node. */
  witnessCompactIndex(): number;
  /** Every field at once, each member's progress included (on the leader). */
  status(): RaftStatus;
}

class LiveView implements RaftView {
  constructor(private readonly r: Raft) {}
  get id(): NodeId {
    return this.r.id;
  }
  get term(): number {
    return this.r.term;
  }
  get role(): Role {
    return this.r.role;
  }
  get leader(): NodeId {
    return this.r.lead;
  }
  get commit(): number {
    return this.r.log.committed;
  }
  get lastIndex(): number {
    return this.r.log.lastIndex();
  }
  get conf(): ConfState {
    return this.r.trk.conf;
  }
  isVoter(id: NodeId): boolean {
    return this.r.trk.isVoter(id);
  }
  voterIds(): NodeId[] {
    return [...this.r.trk.voterIds()];
  }
  isWitness(id?: NodeId): boolean {
    return this.r.isWitness(id);
  }
  witnessCompactIndex(): number {
    return this.r.witnessCompactIndex();
  }
  status(): RaftStatus {
    return this.r.status();
  }
}

type Campaign = "preElection" | "election" | "transfer";

export class Raft {
  readonly id: NodeId;
  clusterId: string | null;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: Role = "follower";
  readonly log: RaftLog;
  readonly trk: Tracker;
  /** The read-only view for code outside the core (RaftView). */
  readonly view: RaftView = new LiveView(this);

  private readonly cfg: Required<Omit<RaftConfig, "storage" | "rng" | "applied" | "clusterId" | "id" | "witnesses" | "asyncStorageWrites">>;

  /** Known bugs switched on (TestRaft only; none in production). */
  protected unsafe: UnsafeBugs = {};
  /** RaftConfig.asyncStorageWrites: the driver reports durability with persisted(). */
  private readonly asyncWrites: boolean;
  private readonly rng: Rng;
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private events: RaftEvent[] = [];
  private eventsDropped = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since start: the leader's clock for the read lease and contact ages. */
  private now = 0;
  private leadTransferee: NodeId = NONE;
  /** Index of the latest conf change proposed; no new one until it is applied. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private readOnly: ReadOnly;
  /** Reads that arrived before this leader committed an entry of its term. */
  private pendingReads: { from: NodeId; ctx: string }[] = [];
  /** Proposals were appended since the last Ready: broadcast them then (batching). */
  private bcastPending = false;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private prevConf: ConfState;
  private newClusterId: string | undefined;
  /**
   * Lease mode: a restarted node may have acknowledged a leader's heartbeat
   * just before it crashed, so it honours that lease for one election
   * timeout after start as if it had heard from a leader.
   */
  private startupLeaseGuard: boolean;
  /** Lease mode: a TimeoutNow was sent this term; a forced election may happen any time, so no more lease reads this term. */
  private leaseRevoked = false;
  private readyOut = false;
  private removedReported = false;
  /** Witness voters (witness.ts). */
  private witnesses: ReadonlySet<NodeId>;
  /** On a witness follower: the smallest data voter match its leader reported in this term (reset with the term). */
  private dataMatchHeard = 0;

  constructor(config: RaftConfig) {
    this.id = config.id;
    assert(this.id !== NONE, "a Raft node needs a non-empty id");
    this.clusterId = config.clusterId;
    this.rng = config.rng;
    this.witnesses = new Set(config.witnesses ?? []);
    this.cfg = {
      electionTicks: config.electionTicks ?? DEFAULTS.electionTicks,
      heartbeatTicks: config.heartbeatTicks ?? DEFAULTS.heartbeatTicks,
      preVote: config.preVote ?? true,
      checkQuorum: config.checkQuorum ?? true,
      readOnly: config.readOnly ?? "safe",
      leaseDriftTicks: config.leaseDriftTicks ?? DEFAULTS.leaseDriftTicks,
      msgBytesMax: config.msgBytesMax ?? DEFAULTS.msgBytesMax,
      inflightMax: config.inflightMax ?? DEFAULTS.inflightMax,
      inflightBytesMax: config.inflightBytesMax ?? DEFAULTS.inflightBytesMax,
      uncommittedBytesMax: config.uncommittedBytesMax ?? DEFAULTS.uncommittedBytesMax,
      readyCommittedBytesMax: config.readyCommittedBytesMax ?? DEFAULTS.readyCommittedBytesMax,
      pendingReadsMax: config.pendingReadsMax ?? DEFAULTS.pendingReadsMax,
      eventsMax: config.eventsMax ?? DEFAULTS.eventsMax,
      emptyNodeVotes: config.emptyNodeVotes ?? true,
    };
    assert(this.cfg.heartbeatTicks > 0, "heartbeatTicks must be positive");
    assert(this.cfg.electionTicks > this.cfg.heartbeatTicks, () => `electionTicks (${this.cfg.electionTicks}) must exceed heartbeatTicks (${this.cfg.heartbeatTicks})`);
    assert(this.cfg.readOnly !== "lease" || this.cfg.checkQuorum, "the read lease needs checkQuorum");
    this.readOnly = new ReadOnly(this.cfg.pendingReadsMax);
    this.startupLeaseGuard = this.cfg.readOnly === "lease";
    this.trk = new Tracker(this.cfg.inflightMax, this.cfg.inflightBytesMax);
    const { hardState, confState } = config.storage.initialState();
    this.log = new RaftLog(config.storage, config.applied ?? 0);
    this.asyncWrites = config.asyncStorageWrites === true;
    this.log.stableOnly = this.asyncWrites;
    this.trk.setConf(confState, this.log.lastIndex());
    if (hardState.term > 0 || hardState.commit > 0) {
      // Asynchronous writes: the stored commit may lag what was applied (and compacted), see below.
      const lowest = this.asyncWrites ? 0 : this.log.committed;
      assert(hardState.commit >= lowest && hardState.commit <= this.log.lastIndex(), () => `stored commit ${hardState.commit} outside [${lowest}, ${this.log.lastIndex()}]`);
      this.log.committed = Math.max(this.log.committed, hardState.commit);
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
    if (this.asyncWrites && this.log.applied > this.log.committed && this.log.applied <= this.log.lastIndex()) {
      // Only entries durable in the log are applied, but the commit index travels in a later write than
      // the entries: a crash may lose it after the apply. An applied entry was committed.
      this.log.committed = this.log.applied;
    }
    assert(this.log.applied <= this.log.committed, () => `applied ${this.log.applied} beyond commit ${this.log.committed}`);
    this.becomeFollower(this.term, NONE);
    this.prevSoft = this.softState();
    this.prevHard = this.hardState();
    this.prevConf = confState;
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.assertNoReadyOut("tick");
    this.now++;
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  /** Starts an election now (tests, and a single-node cluster's fast start). */
  campaign(): void {
    this.assertNoReadyOut("campaign");
    this.hup(this.cfg.preVote ? "preElection" : "election");
  }

  /** Appends a proposal; returns where it went. Throws NotLeaderError / ProposalDroppedError. */
  propose(data: Uint8Array): { index: number; term: number } {
    this.assertNoReadyOut("propose");
    this.checkCanPropose();
    this.checkNotWitness();
    return this.appendEntries([{ index: 0, term: 0, kind: "normal", data }]);
  }

  /** Several proposals in one append, committed together. */
  proposeBatch(datas: readonly Uint8Array[]): { firstIndex: number; lastIndex: number; term: number } {
    this.assertNoReadyOut("proposeBatch");
    assert(datas.length > 0, "proposeBatch() with nothing to propose");
    this.checkCanPropose();
    this.checkNotWitness();
    const at = this.appendEntries(datas.map((data) => ({ index: 0, term: 0, kind: "normal" as const, data })));
    return { firstIndex: at.index - datas.length + 1, lastIndex: at.index, term: at.term };
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    this.assertNoReadyOut("proposeConfChange");
    this.checkCanPropose();
    if (this.pendingConfIndex > this.log.applied) {
      throw new ConfChangeError(`change at ${this.pendingConfIndex} not applied yet (applied ${this.log.applied}); one change at a time`);
    }
    const res = applyConfChange(this.trk.conf, cc);
    if (!res.ok) throw new ConfChangeError(res.reason);
    const at = this.appendEntries([{ index: 0, term: 0, kind: "conf", data: new Uint8Array(), conf: cc }]);
    this.pendingConfIndex = at.index;
    return at;
  }

  /** Asks for a linearizable read point; the answer comes as a ReadState with this ctx. */
  readIndex(ctx: string): void {
    this.assertNoReadyOut("readIndex");
    assert(ctx !== "", "readIndex needs a non-empty ctx");
    if (this.role === "leader") {
      this.handleReadIndex(this.id, ctx);
    } else if (this.lead !== NONE) {
      this.send({ type: "readIndex", to: this.lead, term: 0, context: ctx });
    } else {
      throw new NotLeaderError(NONE);
    }
  }

  /** Hands leadership to `to` (thesis §3.10). On a follower, forwards the request. */
  transferLeadership(to: NodeId): void {
    this.assertNoReadyOut("transferLeadership");
    if (this.role === "leader") this.handleTransferLeader(to);
    else if (this.lead !== NONE) this.send({ type: "transferLeader", to: this.lead, term: 0, context: to });
    else throw new NotLeaderError(NONE);
  }

  /** The driver saw its event loop stall: stop acting as leader at once. */
  stepDown(reason: string): void {
    this.assertNoReadyOut("stepDown");
    if (this.role !== "leader") return;
    this.event({ kind: "stepDown", reason });
    this.becomeFollower(this.term, NONE);
  }

  /** The transport could not reach `id`: stop pipelining to it. */
  reportUnreachable(id: NodeId): void {
    const pr = this.trk.progress.get(id);
    if (this.role === "leader" && pr && pr.state === "replicate") pr.becomeProbe();
  }

  /** The driver finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.trk.progress.get(id);
    if (this.role !== "leader" || !pr || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    // Wait for the follower's answer (or a heartbeat) before probing again.
    pr.becomeProbe();
    pr.msgAppFlowPaused = true;
  }

  step(m: Message): void {
    this.assertNoReadyOut("step");
    if (!this.checkCluster(m)) return;
    if (m.type === "voteResp" || m.type === "preVoteResp") this.learnCommit(m);
    if (m.term > this.term) {
      if (!this.stepHigherTerm(m)) return;
    } else if (m.term !== 0 && m.term < this.term) {
      this.stepLowerTerm(m);
      return;
    }
    if (m.type === "vote" || m.type === "preVote") {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        break;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(m);
        break;
      case "follower":
        this.stepFollower(m);
        break;
    }
  }

  // ---------------------------------------------------------------- Ready

  hasReady(): boolean {
    this.flushBroadcast();
    return (
      this.msgs.length > 0 ||
      this.log.entriesToWrite().length > 0 ||
      this.log.hasPendingSnapshot() ||
      this.log.hasNextCommittedEnts() ||
      this.readStates.length > 0 ||
      this.events.length > 0 ||
      this.newClusterId !== undefined ||
      !softEquals(this.softState(), this.prevSoft) ||
      !hardEquals(this.hardState(), this.prevHard)
    );
  }

  ready(): Ready {
    this.assertNoReadyOut("ready");
    this.flushBroadcast();
    const committedEntries = this.log.nextCommittedEnts(this.cfg.readyCommittedBytesMax);
    // Configuration takes effect as committed entries are handed out to be applied.
    for (const e of committedEntries) if (e.kind === "conf") this.applyConfEntry(e);
    const soft = this.softState();
    const hard = this.hardState();
    const rd: Ready = {
      softState: softEquals(soft, this.prevSoft) ? undefined : soft,
      hardState: hardEquals(hard, this.prevHard) ? undefined : hard,
      snapshot: this.log.unstable.snapshot,
      entries: this.log.entriesToWrite().slice(),
      committedEntries,
      messages: this.msgs,
      readStates: this.readStates,
      confState: confEquals(this.trk.conf, this.prevConf) ? undefined : this.trk.conf,
      clusterId: this.newClusterId,
      events: this.takeEvents(),
    };
    this.msgs = [];
    this.readStates = [];
    this.newClusterId = undefined;
    this.prevSoft = soft;
    this.prevHard = hard;
    this.prevConf = this.trk.conf;
    this.readyOut = true;
    return rd;
  }

  /** The driver persisted, sent and applied `rd`. */
  advance(rd: Ready): void {
    assert(this.readyOut, "advance() without an outstanding ready()");
    this.readyOut = false;
    const last = rd.entries[rd.entries.length - 1];
    if (last && this.asyncWrites) this.log.acceptInProgress(last.index);
    else if (last) this.log.stableTo(last.index, last.term);
    if (rd.snapshot) this.log.stableSnapTo(rd.snapshot.index);
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) {
      this.log.appliedTo(lastApplied.index);
      this.reduceUncommitted(rd.committedEntries);
    }
    if (rd.snapshot) this.log.appliedTo(Math.max(this.log.applied, rd.snapshot.index));
    this.maybeAutoLeaveJoint();
  }

  /**
   * Asynchronous storage writes: the driver's write of the entries up to
   * (index, term) is durable. Writes complete in the order they were handed
   * out. Ignored when a newer append replaced that entry meanwhile.
   */
  persisted(at: { readonly index: number; readonly term: number }): void {
    this.assertNoReadyOut("persisted");
    assert(this.asyncWrites, "persisted() is for asyncStorageWrites; a synchronous driver reports writes by advance()");
    if (this.log.termOr0(at.index) !== at.term) return;
    this.log.stableTo(at.index, at.term);
    if (this.role !== "leader") return;
    // The leader's own vote toward the commit: only now that its copy is on its disk (§10.2.1).
    if (this.trk.progress.get(this.id)?.maybeUpdate(at.index) && this.maybeCommit()) {
      this.releasePendingReads();
      this.bcastPending = true;
    }
  }

  // ---------------------------------------------------------------- status

  status(): RaftStatus {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === "leader") {
      for (const [id, pr] of this.trk.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
          ticksSinceContact: id === this.id ? 0 : pr.lastContactTick < 0 ? -1 : this.now - pr.lastContactTick,
        });
      }
    }
    return {
      id: this.id,
      clusterId: this.clusterId,
      term: this.term,
      vote: this.vote,
      role: this.role,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      conf: this.trk.conf,
      leadTransferee: this.leadTransferee,
      progress,
    };
  }

  softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  // ---------------------------------------------------------------- witnesses (witness.ts)

  /** The voters that keep no state machine (from the cluster file; the driver updates it on reload). */
  setWitnesses(ids: Iterable<NodeId>): void {
    this.witnesses = new Set(ids);
  }

  isWitness(id: NodeId = this.id): boolean {
    return this.witnesses.has(id);
  }

  /**
   * On a witness: the index up to which its log may be compacted now (rule 1
   * of witness.ts): every data voter holds the committed entries up to it.
   * 0 on a data node, which compacts by its own checkpoints.
   */
  witnessCompactIndex(): number {
    if (!this.isWitness()) return 0;
    const safe = this.log.applied;
    if (this.unsafe.witnessCompactsCommitted) return safe;
    const dataMatch = this.role === "leader" ? dataVoterMatchMin(this.trk, this.witnesses) : this.dataMatchHeard;
    return Math.min(safe, dataMatch);
  }

  private checkNotWitness(): void {
    if (this.isWitness()) throw new ProposalDroppedError(`${this.id} is a witness: it keeps no state machine and takes no writes; it hands leadership to a data node as soon as one is up to date`);
  }

  /** A witness leader hands leadership to a data voter as soon as one has its whole log (rule 2). */
  private maybeWitnessHandOff(): void {
    if (this.role !== "leader" || !this.isWitness() || this.leadTransferee !== NONE) return;
    const to = handOffTarget(this.trk, this.witnesses, this.log.lastIndex());
    if (to !== undefined) this.handleTransferLeader(to);
  }

  /** What a leader tells a witness on appends and heartbeats: the smallest data voter match (rule 1). */
  private dataMatchFor(to: NodeId): { dataMatch?: number } {
    return this.witnesses.has(to) ? { dataMatch: dataVoterMatchMin(this.trk, this.witnesses) } : {};
  }

  private hearDataMatch(m: Message): void {
    if (m.dataMatch !== undefined && this.isWitness()) this.dataMatchHeard = Math.max(this.dataMatchHeard, m.dataMatch);
  }

  /** Whether this node may campaign: a voter with no snapshot waiting to be installed. */
  promotable(): boolean {
    return this.trk.isVoter(this.id) && !this.log.hasPendingSnapshot();
  }

  // ---------------------------------------------------------------- roles

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
      this.leaseRevoked = false;
    }
    this.lead = NONE;
    // A data voter match heard from an earlier leader may describe a log tail since overwritten (witness.ts rule 1).
    this.dataMatchHeard = 0;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.rng.int(this.cfg.electionTicks);
    this.leadTransferee = NONE;
    this.trk.resetVotes();
    const last = this.log.lastIndex();
    // With asynchronous writes the leader's own match is what is durable, not what it holds.
    const ownMatch = this.asyncWrites ? this.log.stableLastIndex() : last;
    for (const [id, pr] of this.trk.progress) {
      pr.becomeProbe();
      pr.match = id === this.id ? ownMatch : 0;
      pr.next = last + 1;
      pr.recentActive = false;
      pr.ackedSendTick = -1;
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly = new ReadOnly(this.cfg.pendingReadsMax);
    this.pendingReads = [];
    this.bcastPending = false;
  }

  private becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  private becomePreCandidate(): void {
    assert(this.role !== "leader", "leader cannot become pre-candidate");
    // PreVote (thesis §9.6) does not change term or vote.
    this.trk.resetVotes();
    this.lead = NONE;
    this.role = "preCandidate";
  }

  private becomeCandidate(): void {
    assert(this.role !== "leader", "leader cannot become candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", () => `only a candidate becomes leader, not a ${this.role}`);
    this.reset(this.term);
    this.lead = this.id;
    this.role = "leader";
    const self = this.trk.progress.get(this.id);
    assert(self, "leader must be a member");
    self.becomeReplicate();
    self.recentActive = true;
    // Conservatively, any change in the log may be an unapplied conf change.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op lets this leader commit (and learn the commit index of) earlier entries (§5.4.2, §8).
    this.appendEntries([{ index: 0, term: 0, kind: "normal", data: new Uint8Array() }]);
  }

  private hup(kind: Campaign): void {
    if (this.role === "leader") return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return;
    this.runCampaign(kind);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const ents = this.log.slice(this.log.applied + 1, this.log.committed + 1, Number.MAX_SAFE_INTEGER);
    return ents.some((e) => e.kind === "conf");
  }

  private runCampaign(kind: Campaign): void {
    let voteType: MessageType;
    let term: number;
    if (kind === "preElection") {
      this.becomePreCandidate();
      voteType = "preVote";
      term = this.term + 1; // the term we would campaign in; ours is unchanged
    } else {
      this.becomeCandidate();
      voteType = "vote";
      term = this.term;
    }
    this.trk.recordVote(this.id, true);
    if (this.trk.tally().result === "won") {
      if (kind === "preElection") this.runCampaign("election");
      else this.becomeLeader();
      return;
    }
    for (const id of [...this.trk.voterIds()].sort()) {
      if (id === this.id) continue;
      this.send({
        type: voteType,
        to: id,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        context: kind === "transfer" ? CAMPAIGN_TRANSFER : "",
      });
    }
  }

  // ---------------------------------------------------------------- ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) this.startupLeaseGuard = false;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.cfg.preVote ? "preElection" : "election");
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        if (!this.trk.quorumActive(this.id)) {
          this.event({ kind: "stepDown", reason: "CheckQuorum: no quorum heard from within an election timeout" });
          this.becomeFollower(this.term, NONE);
          return;
        }
        for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
      }
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.leadTransferee !== NONE) this.leadTransferee = NONE;
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastPendingCtx());
    }
  }

  // ---------------------------------------------------------------- step

  private checkCluster(m: Message): boolean {
    if (this.clusterId === m.cluster) return true;
    // A node added as a voter before it heard from the leader must be able to vote, or a
    // joint configuration that needs it could never elect anyone.
    // (Only where empty nodes vote at all: otherwise a stray candidate could claim a fresh node.)
    const fromCandidate = (m.type === "vote" || m.type === "preVote") && this.cfg.emptyNodeVotes;
    const adoptable = m.type === "app" || m.type === "heartbeat" || m.type === "snap" || fromCandidate;
    if (this.clusterId === null && m.cluster !== "" && adoptable) {
      this.clusterId = m.cluster;
      this.newClusterId = m.cluster;
      this.event({ kind: "clusterAdopted", clusterId: m.cluster, from: m.from });
      return true;
    }
    this.event({ kind: "clusterMismatch", from: m.from, theirs: m.cluster, ours: this.clusterId ?? "" });
    return false;
  }

  /** Returns false when the message must be ignored. */
  private stepHigherTerm(m: Message): boolean {
    if (m.type === "vote" || m.type === "preVote") {
      const force = m.context === CAMPAIGN_TRANSFER;
      const inLease =
        this.cfg.checkQuorum && (this.lead !== NONE || this.startupLeaseGuard) && this.electionElapsed < this.cfg.electionTicks;
      // A node that hears from a live leader ignores disruptive candidates (thesis §4.2.3).
      if (!force && inLease) return false;
    }
    if (m.type === "preVote") return true; // never changes our term
    if (m.type === "preVoteResp" && !m.reject) return true; // the term is the one we would campaign in
    const fromLeader = m.type === "app" || m.type === "heartbeat" || m.type === "snap";
    this.becomeFollower(m.term, fromLeader ? m.from : NONE);
    return true;
  }

  private stepLowerTerm(m: Message): void {
    if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === "heartbeat" || m.type === "app")) {
      // A stale leader (e.g. back from a partition) learns of the new term from this answer.
      this.send({ type: "appResp", to: m.from });
    } else if (m.type === "preVote") {
      this.send({ type: "preVoteResp", to: m.from, reject: true });
    }
  }

  /**
   * A voter that missed the commit of a configuration without the old leader
   * may need that configuration to win an election at all; a peer that knows
   * the commit tells it in its vote answer. Safe by log matching (§5.3): an
   * entry with the same index and term as a committed one is that entry.
   */
  private learnCommit(m: Message): void {
    if (m.commit > this.log.committed && m.commit <= this.log.lastIndex() && this.log.matchTerm(m.commit, m.commitTerm)) {
      this.log.commitTo(m.commit);
    }
  }

  private handleVoteRequest(m: Message): void {
    const respType: MessageType = m.type === "vote" ? "voteResp" : "preVoteResp";
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === "preVote" && m.term > this.term);
    const logOk = this.unsafe.voteWithoutLogCheck || this.log.isUpToDate(m.index, m.logTerm);
    const empty = this.log.lastIndex() === 0 && this.log.snapshot().index === 0;
    if (empty && !this.cfg.emptyNodeVotes) {
      this.send({ type: respType, to: m.from, reject: true });
      return;
    }
    const commit = { commit: this.log.committed, commitTerm: this.log.termOr0(this.log.committed) };
    if (canVote && logOk) {
      // A granted vote carries the candidate's term (for preVote, the future term).
      this.send({ type: respType, to: m.from, term: m.term, ...commit });
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, reject: true, ...commit });
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === "readIndex") {
      this.handleReadIndex(m.from, m.context);
      return;
    }
    if (m.type === "transferLeader") {
      this.handleTransferLeader(m.context);
      return;
    }
    const pr = this.trk.progress.get(m.from);
    if (!pr) return; // not (or no longer) a member
    pr.recentActive = true;
    pr.lastContactTick = this.now;
    if (m.type === "appResp") this.handleAppendResponse(m, pr);
    else if (m.type === "heartbeatResp") this.handleHeartbeatResponse(m, pr);
  }

  private stepCandidate(m: Message): void {
    const myResp: MessageType = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
    switch (m.type) {
      case "app":
      case "heartbeat":
      case "snap":
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case "voteResp":
      case "preVoteResp": {
        if (m.type !== myResp) return;
        this.trk.recordVote(m.from, !m.reject);
        const { result } = this.trk.tally();
        if (result === "won") {
          if (this.role === "preCandidate") this.runCampaign("election");
          else this.becomeLeader();
        } else if (result === "lost") {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
        return; // readIndex, timeoutNow, transferLeader: no leader to serve them
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "app":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.hearDataMatch(m);
        this.handleAppendEntries(m);
        return;
      case "heartbeat":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.hearDataMatch(m);
        this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
        this.send({ type: "heartbeatResp", to: m.from, index: m.index, context: m.context });
        return;
      case "snap":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case "timeoutNow":
        // Leadership transfer: campaign at once, skipping PreVote (thesis §3.10).
        this.hup("transfer");
        return;
      case "readIndexResp":
        this.readStates.push({ index: m.index, ctx: m.context });
        return;
      default:
        // readIndex / transferLeader meant for a leader are dropped, never
        // forwarded again: two nodes with stale leader hints could bounce them forever.
        return;
    }
  }

  // ---------------------------------------------------------------- replication

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ type: "appResp", to: m.from, index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend({ index: m.index, logTerm: m.logTerm, commit: m.commit, entries: m.entries });
    if (lastNew !== undefined) {
      this.send({ type: "appResp", to: m.from, index: lastNew });
      return;
    }
    // Fast backtracking: point the leader at the last entry that may match.
    const hintIndex = Math.min(m.index, this.log.lastIndex());
    const hint = this.log.findConflictByTerm(hintIndex, m.logTerm);
    this.send({ type: "appResp", to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    assert(s, "snap message without snapshot metadata");
    if (this.restore(s)) {
      this.send({ type: "appResp", to: m.from, index: this.log.lastIndex() });
    } else {
      this.send({ type: "appResp", to: m.from, index: this.log.committed });
    }
  }

  private restore(s: SnapshotMeta): boolean {
    assert(this.role === "follower", () => `restore() as ${this.role}`);
    if (s.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.index, s.term)) {
      // We already have the snapshot's last entry: just fast-forward the commit.
      this.log.commitTo(s.index);
      return false;
    }
    this.log.restore(s);
    this.trk.setConf(s.conf, this.log.lastIndex());
    this.removedReported = false;
    return true;
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      let probe = m.rejectHint;
      if (m.logTerm > 0) probe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, probe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    const updated = pr.maybeUpdate(m.index);
    // An ack of exactly match still moves a probing follower back to replicate.
    if (!updated && !(pr.match === m.index && pr.state === "probe")) {
      if (pr.state === "replicate") pr.inflights.freeLE(m.index);
      return;
    }
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);

    if (this.maybeCommit()) {
      this.releasePendingReads();
      this.bcastAppend();
    } else if (wasPaused) {
      this.sendAppend(m.from, true);
    }
    // Keep the pipeline full while there is more to send.
    while (this.sendAppend(m.from, false)) {
      /* each call sends one more batch */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
    this.maybeWitnessHandOff();
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    // A probe is resent only when a heartbeat sent after it was answered: then the probe was lost (the
    // follower answers in order). Answers to older heartbeats (a burst after the follower was paused
    // or its connection was slow) would otherwise each send another copy of a full-size probe.
    if (pr.state !== "probe" || m.index > pr.probeSentTick) pr.msgAppFlowPaused = false;
    pr.ackedSendTick = Math.max(pr.ackedSendTick, m.index);
    if (pr.match < this.log.lastIndex() || pr.state === "probe") this.sendAppend(m.from, true);
    this.maybeWitnessHandOff();
    if (m.context === "") return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks) return;
    const votes = new Map<NodeId, boolean>([...acks].map((id) => [id, true]));
    if (jointVote(this.trk, votes) === "won") {
      for (const rs of this.readOnly.advance(m.context)) this.answerRead(rs.from, rs.ctx, rs.index);
    }
  }

  private maybeCommit(): boolean {
    const mci = this.trk.committed();
    if (this.unsafe.commitOldTermByCount) {
      if (mci <= this.log.committed || mci > this.log.lastIndex()) return false;
      this.log.commitTo(mci);
      return true;
    }
    // Only entries of the current term are committed by counting replicas (§5.4.2).
    return this.log.maybeCommit(Math.min(mci, this.log.lastIndex()), this.term);
  }

  private checkCanPropose(): void {
    if (this.role !== "leader") throw new NotLeaderError(this.lead);
    if (this.leadTransferee !== NONE) {
      throw new ProposalDroppedError(`leadership transfer to ${this.leadTransferee} in progress`);
    }
    if (!this.trk.progress.has(this.id)) throw new ProposalDroppedError("this leader is being removed from the cluster");
  }

  private appendEntries(ents: Entry[]): { index: number; term: number } {
    let bytes = 0;
    for (const e of ents) bytes += e.data.byteLength;
    if (this.uncommittedBytes > 0 && bytes > 0 && this.uncommittedBytes + bytes > this.cfg.uncommittedBytesMax) {
      throw new ProposalDroppedError(`too many uncommitted bytes (${this.uncommittedBytes} + ${bytes} > ${this.cfg.uncommittedBytesMax}); retry later`);
    }
    this.uncommittedBytes += bytes;
    let li = this.log.lastIndex();
    const stamped = ents.map((e) => ({ ...e, index: ++li, term: this.term }));
    li = this.log.append(stamped);
    // Asynchronous writes: the leader counts itself once persisted() reports the entries durable.
    if (!this.asyncWrites) this.trk.progress.get(this.id)?.maybeUpdate(li);
    this.maybeCommit();
    this.bcastPending = true;
    return { index: li, term: this.term };
  }

  private reduceUncommitted(ents: readonly Entry[]): void {
    if (this.role !== "leader") return;
    let bytes = 0;
    for (const e of ents) bytes += e.data.byteLength;
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - bytes);
  }

  private flushBroadcast(): void {
    if (!this.bcastPending) return;
    this.bcastPending = false;
    if (this.role === "leader") this.bcastAppend();
  }

  private bcastAppend(): void {
    for (const id of [...this.trk.progress.keys()].sort()) {
      if (id !== this.id) this.sendAppend(id, true);
    }
  }

  private bcastHeartbeat(ctx: string): void {
    for (const [id, pr] of [...this.trk.progress].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (id === this.id) continue;
      this.send({
        type: "heartbeat",
        to: id,
        // Only what the follower is known to have can be committed there.
        commit: Math.min(pr.match, this.log.committed),
        index: this.now,
        context: ctx,
        ...this.dataMatchFor(id),
      });
    }
  }

  /** Sends an append (or a snapshot) to `to`. Returns whether anything was sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number;
    let ents: Entry[];
    try {
      prevTerm = this.log.term(prevIndex);
      // With a full window only an empty append goes out: its answer (ack or
      // reject) clears the window even if every append in it was lost.
      const throttled = pr.state === "replicate" && pr.inflights.full();
      ents = throttled ? [] : this.log.entriesFrom(pr.next, this.cfg.msgBytesMax);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return this.sendSnapshot(to, pr);
      throw e;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({ type: "app", to, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed, ...this.dataMatchFor(to) });
    let bytes = 0;
    for (const e of ents) bytes += entryBytes(e);
    pr.sentEntries(ents.length, bytes, this.now);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    if (this.isWitness()) {
      // Rule 3 of witness.ts: never for a data voter (the simulator checks this event never names one).
      this.event({ kind: "dropped", what: `snapshot to ${to}`, reason: WITNESS_NO_SNAPSHOT });
      return false;
    }
    const snap = this.log.snapshot();
    assert(snap.index > 0, () => `need a snapshot for ${to} (next ${pr.next}) but none exists`);
    pr.becomeSnapshot(snap.index);
    this.send({ type: "snap", to, snapshot: snap });
    return true;
  }

  // ---------------------------------------------------------------- reads

  private committedEntryInCurrentTerm(): boolean {
    return this.log.termOr0(this.log.committed) === this.term;
  }

  private handleReadIndex(from: NodeId, ctx: string): void {
    if (this.trk.isSingleton()) {
      this.answerRead(from, ctx, this.log.committed);
      return;
    }
    // Until this leader commits an entry of its term it does not know the commit index (thesis §6.4 step 1).
    if (!this.committedEntryInCurrentTerm()) {
      if (this.pendingReads.length >= this.cfg.pendingReadsMax) {
        this.event({ kind: "dropped", what: `read ${ctx}`, reason: "too many reads waiting for the first commit" });
        return;
      }
      this.pendingReads.push({ from, ctx });
      return;
    }
    this.serveRead(from, ctx);
  }

  private serveRead(from: NodeId, ctx: string): void {
    if (this.cfg.readOnly === "lease" && this.leaseValid()) {
      this.answerRead(from, ctx, this.log.committed);
      return;
    }
    if (this.readOnly.full()) {
      this.event({ kind: "dropped", what: `read ${ctx}`, reason: `${this.readOnly.pendingMax} reads already pending` });
      return;
    }
    this.readOnly.addRequest({ index: this.log.committed, from, ctx });
    this.readOnly.recvAck(this.id, ctx);
    this.bcastHeartbeat(ctx);
  }

  /** The lease holds while a quorum acknowledged a heartbeat sent within the lease window. */
  leaseValid(): boolean {
    if (this.role !== "leader" || this.leadTransferee !== NONE || this.leaseRevoked) return false;
    const self = this.trk.progress.get(this.id);
    if (self) self.ackedSendTick = this.now;
    const sent = this.trk.quorumAckedSendTick();
    return sent >= 0 && this.now < sent + this.cfg.electionTicks - this.cfg.leaseDriftTicks;
  }

  private releasePendingReads(): void {
    if (this.pendingReads.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const reads = this.pendingReads;
    this.pendingReads = [];
    for (const r of reads) this.serveRead(r.from, r.ctx);
  }

  private answerRead(from: NodeId, ctx: string, index: number): void {
    if (from === this.id) this.readStates.push({ index, ctx });
    else this.send({ type: "readIndexResp", to: from, index, context: ctx });
  }

  // ---------------------------------------------------------------- transfer

  private handleTransferLeader(to: NodeId): void {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isLearner) {
      this.event({ kind: "dropped", what: `transfer to ${to}`, reason: "not a voter of this cluster" });
      return;
    }
    if (to === this.id || to === this.leadTransferee) return;
    // A new request replaces one under way; the election timer bounds the attempt.
    this.electionElapsed = 0;
    this.leadTransferee = to;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
  }

  private sendTimeoutNow(to: NodeId): void {
    // The transferee's forced election ignores followers' leases, even if this message arrives late.
    this.leaseRevoked = true;
    this.send({ type: "timeoutNow", to });
  }

  // ---------------------------------------------------------------- configuration

  private applyConfEntry(e: Entry): void {
    assert(e.conf, () => `conf entry ${e.index} without a change`);
    const res = applyConfChange(this.trk.conf, e.conf);
    if (!res.ok) {
      // Every node rejects the same committed entry the same way: still deterministic.
      this.event({ kind: "confRejected", index: e.index, reason: res.reason });
      return;
    }
    // Only a member can be removed: a joiner replaying configurations from before it was added is not.
    const wasMember = this.trk.progress.has(this.id);
    this.trk.setConf(res.conf, this.log.lastIndex());
    this.event({ kind: "confApplied", index: e.index, conf: res.conf });
    if (wasMember && !this.trk.progress.has(this.id) && !this.removedReported) {
      this.removedReported = true;
      this.event({ kind: "removed", index: e.index });
    }
    if (this.role === "candidate" || this.role === "preCandidate") {
      // An election in a configuration that no longer counts this node as a voter cannot be won.
      if (!this.trk.isVoter(this.id)) this.becomeFollower(this.term, NONE);
      return;
    }
    if (this.role !== "leader") return;
    if (!this.trk.isVoter(this.id) && !isJoint(res.conf)) {
      // A removed leader steps down once the configuration without it is committed (§6).
      this.event({ kind: "stepDown", reason: `removed from the voters at index ${e.index}` });
      this.becomeFollower(this.term, NONE);
      return;
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) this.leadTransferee = NONE;
    if (this.maybeCommit()) this.releasePendingReads();
    this.bcastPending = true;
  }

  /** Leaves a joint configuration once the entry that entered it is applied. */
  private maybeAutoLeaveJoint(): void {
    if (this.role !== "leader" || !isJoint(this.trk.conf)) return;
    if (this.pendingConfIndex > this.log.applied || this.leadTransferee !== NONE) return;
    const at = this.appendEntries([{ index: 0, term: 0, kind: "conf", data: new Uint8Array(), conf: { op: "leave", changes: [] } }]);
    this.pendingConfIndex = at.index;
  }

  // ---------------------------------------------------------------- plumbing

  private send(m: Partial<Message> & { type: MessageType; to: NodeId }): void {
    this.msgs.push({ ...MESSAGE_DEFAULTS, from: this.id, term: this.term, cluster: this.clusterId ?? "", ...m });
  }

  private event(e: RaftEvent): void {
    if (this.events.length >= this.cfg.eventsMax) {
      this.eventsDropped++;
      return;
    }
    this.events.push(e);
  }

  private takeEvents(): RaftEvent[] {
    const out = this.events;
    if (this.eventsDropped > 0) {
      out.push({ kind: "dropped", what: `${this.eventsDropped} events`, reason: `more than ${this.cfg.eventsMax} in one ready` });
      this.eventsDropped = 0;
    }
    this.events = [];
    return out;
  }

  private assertNoReadyOut(what: string): void {
    assert(!this.readyOut, () => `${what}() between ready() and advance(): the Ready contract forbids it`);
  }
}

function softEquals(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role;
}

function hardEquals(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

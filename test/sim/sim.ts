/**
 * A deterministic simulator for the real Raft core driven by the real Ready
 * loop (src/node/driver.ts, the class the binary runs), over a fake network (drop,
 * delay, duplicate, reorder, symmetric and asymmetric partitions), fake disks
 * (a crash loses whatever was not yet synced under the Ready contract; crash
 * points inside a Ready: before its persist, a send, its apply), a fake
 * clock (global ticks; the driver's deferred turns run when the simulator says) and a random workload (proposals, reads, membership
 * changes, leadership transfers, crashes, restarts, compaction). Everything
 * follows from one seed.
 *
 * After every step the checkers verify: election safety (§5.2: at most one
 * leader per term), log matching (§5.3), leader completeness (§5.4), state
 * machine safety (§5.4.3), and that every read index answer covers all
 * writes committed before the read began (thesis §6.4). After the faults stop,
 * liveness: a leader within a bounded number of ticks and a new proposal
 * committed everywhere. The witness workload (SimOptions.witness) adds the
 * witness rule's check: a data voter never needs a snapshot from the witness.
 */
import {
  MemoryStorage,
  NotLeaderError,
  ProposalDroppedError,
  ConfChangeError,
  Raft,
  SeededRng,
  WITNESS_NO_SNAPSHOT,
  allMembers,
  type ConfChangeSingle,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type Ready,
  type ReadOnlyMode,
} from "../../src/raft/index.ts";
import { TestRaft, type UnsafeBugs } from "../../src/raft/testing.ts";
import { Driver, type DriverBugs } from "../../src/node/driver.ts";
import type { HardState } from "../../src/raft/index.ts";
import { bootstrapStorage } from "../raft/harness.ts";
import { encodeCommand } from "../../src/statemachine/commands.ts";
import { WitnessStateMachine, encodeRandomCommand, openStateMachine, mixBytes, type NodeStateMachine, type SmSnapshot } from "./statemachine.ts";

export interface SimBugs extends UnsafeBugs, DriverBugs {
  /** Log store bug: persist() returns before the log and hard state are synced (they are synced at the next Ready). */
  readonly applyBeforePersist?: boolean;
}

/** A process crash at a point inside a Ready (thrown by the fake transport and state machine). */
class SimCrash extends Error {
  override name = "SimCrash";
}

export interface SimOptions {
  readonly seed: number;
  readonly steps: number;
  readonly nodes: 3 | 5;
  readonly bugs?: SimBugs;
  /** Default: chosen by the seed. */
  readonly readOnly?: ReadOnlyMode;
  readonly traceSize?: number;
  /**
   * Fault regime. "mixed" draws every parameter at random; "harsh" is lossy,
   * chaotic, one entry per append and frequent timeouts; the default picks
   * harsh for a quarter of the seeds.
   */
  readonly profile?: "mixed" | "harsh";
  /** Print every event as it happens. */
  readonly verbose?: boolean;
  /**
   * The log store and write path. "sync": persist() durable on return, the core counts the leader
   * at append (the classic order). "parallel": the same store, the core with asyncStorageWrites and
   * the driver's parallelAppends (the leader's appends leave before its own write). "async": a store
   * whose writes complete later (a crash loses them, or tears the last one). Default: chosen by the seed.
   */
  readonly storage?: StorageMode;
  /**
   * The witness workload (src/raft/witness.ts): 3 founders, n1 and n2 data
   * nodes and n3 a witness with no state machine that compacts its log by the
   * witness rule; no membership changes; a nemesis that cuts a data follower
   * off so that entries are committed by the leader and the witness alone.
   */
  readonly witness?: boolean;
}

export type StorageMode = "sync" | "parallel" | "async";

export interface SimStats {
  commits: number;
  elections: number;
  reads: number;
  confChanges: number;
  transfers: number;
  crashes: number;
  snapshots: number;
  delivered: number;
  livenessTicks: number;
  /** Witness workload: terms the witness led (each must end in a hand-off to a data node). */
  witnessLeads?: number;
  /** Storage "async": writes started while an earlier one of the same node was still in flight (the pipeline). */
  pipelinedWrites?: number;
}

export class SimFailure extends Error {
  override name = "SimFailure";
  constructor(
    readonly check: string,
    readonly detail: string,
    readonly seed: number,
    readonly step: number,
    readonly trace: readonly string[],
    readonly replay: string,
  ) {
    super(`${check}: ${detail} (seed ${seed}, step ${step})`);
  }

  report(): string {
    return [`SIMULATION FAILED: ${this.message}`, `replay: ${this.replay}`, "last events:", ...this.trace.map((t) => `  ${t}`)].join("\n");
  }
}

interface InFlight {
  readonly msg: Message;
  /** Snapshot data travelling with a snap message. */
  readonly snap?: SmSnapshot;
}

type DiskOp = (s: MemoryStorage) => void;

class SimNode {
  raft: Raft | undefined;
  /** The real Ready loop (src/node/driver.ts), over this node's fake clock, log, network and state machine. */
  driver: Driver | undefined;
  /** The fake clock's queue: what the driver deferred to a later turn. */
  tasks: (() => void)[] = [];
  /** Snapshots the transport could not send in this Ready (reported to the core after it). */
  failedSnaps: NodeId[] = [];
  crashed = false;
  working: MemoryStorage;
  durable: MemoryStorage;
  unsynced: DiskOp[] = [];
  /** Asynchronous writes started and not yet durable, oldest first (storage "async"). */
  pending: { readonly entries: readonly Entry[]; readonly ops: DiskOp[]; readonly done: (err?: unknown) => void }[] = [];
  /**
   * The real state machine on an in-memory SQLite database: durable at apply (the applied index is in
   * the same transaction). A witness has none: only its applied index (WitnessStateMachine).
   */
  readonly sm: NodeStateMachine;
  /** The checkpoint matching the log's snapshot (what a snap message carries). */
  smSnap: SmSnapshot;
  staged = new Map<number, SmSnapshot>();
  commitSeen = 0;
  wasLeaderInTerm = -1;

  constructor(readonly id: NodeId, storage: MemoryStorage, sm: { applied: number; hash: number; witness?: boolean }) {
    this.durable = storage;
    this.working = storage.clone();
    this.sm = sm.witness ? new WitnessStateMachine(sm.applied) : openStateMachine({ ...sm, conf: storage.initialState().confState });
    this.smSnap = this.sm.snapshot();
  }

  get up(): boolean {
    return this.raft !== undefined;
  }

  write(op: DiskOp, syncNow: boolean): void {
    op(this.working);
    if (syncNow) op(this.durable);
    else this.unsynced.push(op);
  }

  sync(): void {
    for (const op of this.unsynced) op(this.durable);
    this.unsynced = [];
  }

  crash(): void {
    this.driver?.stop();
    this.driver = undefined;
    this.tasks = [];
    this.failedSnaps = [];
    this.raft = undefined;
    this.unsynced = [];
    this.pending = [];
    this.working = this.durable.clone();
    this.staged.clear();
  }
}


/** Every proposal's bytes differ (each command carries its own sequence number as ts), so a hash of them names it. */
function identOfData(data: Uint8Array): string {
  return `c${mixBytes(0, data)}.${mixBytes(0x1234567, data)}/${data.byteLength}`;
}

function identOf(e: Entry): string {
  if (e.kind === "conf") return `conf@${e.term}:${JSON.stringify(e.conf)}`;
  return e.data.byteLength === 0 ? `noop@${e.term}` : identOfData(e.data);
}

const ELECTION_TICKS = 10;
/** The witness workload's witness. */
const WITNESS_ID = "n3";
/** What is proposed to a node that is not the leader (it must refuse it). */
const REFUSED = new Uint8Array([0xf6]);
const POOL_MAX = 2048;

export class Simulator {
  private readonly rng: SeededRng;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly universe: NodeId[];
  private nextJoiner: number;
  private pool: InFlight[] = [];
  private blocked = new Set<string>();
  private trace: string[] = [];
  private step = 0;
  private proposalSeq = 0;
  private commandSeq = 0;
  private readSeq = 0;
  private readonly readOnly: ReadOnlyMode;
  private faultsOn = true;
  readonly stats: SimStats = { commits: 0, elections: 0, reads: 0, confChanges: 0, transfers: 0, crashes: 0, snapshots: 0, delivered: 0, livenessTicks: 0 };

  // Checker state.
  private readonly leaderOfTerm = new Map<number, NodeId>();
  private readonly logIdent = new Map<string, string>();
  private readonly committedIdent: string[] = [];
  private globalCommit = 0;
  private readonly appliedIdent: string[] = [];
  private readonly appliedHash: string[] = ["0.0"];
  private readonly reads = new Map<string, { node: NodeId; commitAtStart: number }>();
  /** Fault intensity, chosen per seed so some runs are calm and some are chaos. */
  private readonly chaos: number;
  /** 0: ticks are rare next to messages (fast network); 1: timeouts fire often (slow network, many elections). */
  private readonly tickBias: number;
  private readonly msgBytesMax: number;
  /** Probability that the network loses a message at delivery. */
  private readonly lossRate: number;
  private readonly emptyNodeVotes: boolean;
  private leaderFault: { id: NodeId; term: number; at: number } | undefined;
  /** Probability that the process dies at a crash point inside a Ready (before its persist, a send or its apply). */
  private readonly crashPointRate: number;
  /** The driver's Readies per turn: 1 interleaves inputs between every Ready, more batches like the binary. */
  private readonly readyRounds: number;
  private readonly storage: StorageMode;
  /** Storage "async": the chance per turn that a node's write in flight becomes durable. */
  private readonly writeDoneRate: number;
  /** Storage "async": the chance that a crash keeps a prefix of the entries of the write in flight (a torn write). */
  private readonly tearRate: number;
  /** Storage "async": the chance per turn that a node dies while its write is in flight (what a misordered driver loses). */
  private readonly inFlightCrashRate: number;

  constructor(private readonly opts: SimOptions) {
    this.rng = new SeededRng(opts.seed);
    this.readOnly = opts.readOnly ?? (this.rng.chance(0.5) ? "lease" : "safe");
    const harsh = opts.profile === "harsh" || (opts.profile !== "mixed" && this.rng.chance(0.25));
    this.chaos = harsh ? 1.2 + this.rng.next() * 0.5 : 0.3 + this.rng.next() * 1.4;
    this.tickBias = harsh ? 0.2 + this.rng.next() * 0.5 : this.rng.next() ** 2;
    // 1 byte means one entry per append: old-term entries then travel apart from the new leader's no-op.
    this.msgBytesMax = harsh ? 1 : this.rng.pick([1, 160, 4096]);
    this.lossRate = harsh ? 0.25 : this.rng.pick([0, 0.02, 0.1, 0.25]);
    // cairn's setting (false) on half the seeds: then members join as learners and are
    // promoted only once they hold data, as cairn's planner does.
    this.emptyNodeVotes = this.rng.chance(0.5);
    this.crashPointRate = this.rng.pick([0, 0.005, 0.02]) * this.chaos;
    this.readyRounds = this.rng.pick([1, 1, 4, 64]);
    this.storage = opts.storage ?? this.rng.pick(["sync", "parallel", "async"] as const);
    this.writeDoneRate = this.rng.pick([0.05, 0.2, 0.5, 0.9]);
    this.inFlightCrashRate = this.rng.pick([0, 0.01, 0.03]) * this.chaos;
    this.tearRate = this.rng.pick([0, 0.3, 0.7]);
    const founders = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    this.universe = [...founders];
    this.nextJoiner = opts.nodes + 1;
    const initIdent = identOf(bootstrapStorage(founders).entries(1, 2, Infinity)[0]!);
    for (const id of founders) {
      // The founding configuration entry (index 1) writes no rows: the state's hash there is the empty one.
      const node = new SimNode(id, bootstrapStorage(founders), { applied: 1, hash: 0, witness: opts.witness === true && id === WITNESS_ID });
      this.nodes.set(id, node);
      this.start(node);
    }
    this.appliedIdent[1] = initIdent;
    this.appliedHash[1] = "0.0";
    this.committedIdent[1] = initIdent;
    this.globalCommit = 1;
  }

  run(): SimStats {
    for (this.step = 1; this.step <= this.opts.steps; this.step++) {
      this.guard(() => this.randomAction());
      this.guard(() => this.processReadies(0.75));
    }
    this.guard(() => this.liveness());
    this.guard(() => this.checkFinalState());
    return this.stats;
  }

  /** Frees every node's in-memory database. */
  close(): void {
    for (const n of this.nodes.values()) n.sm.close();
  }

  /** The whole state (every row of every state-machine table) is the same on nodes at the same applied index. */
  private checkFinalState(): void {
    const byIndex = new Map<number, { id: NodeId; digest: number }>();
    for (const n of this.nodes.values()) {
      if (this.isWitness(n)) continue; // no state to compare
      const at = n.sm.applied;
      const digest = n.sm.digest();
      const other = byIndex.get(at);
      if (!other) byIndex.set(at, { id: n.id, digest });
      else if (other.digest !== digest) this.fail("state machine safety", `${n.id} and ${other.id} are both at applied index ${at} with different feed/kv tables`);
    }
  }

  // ---------------------------------------------------------------- failures

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof SimFailure) throw e;
      const err = e instanceof Error ? e : new Error(String(e));
      throw this.failure(err.name === "AssertionError" ? "assertion" : "exception", `${err.message}\n${err.stack ?? ""}`);
    }
  }

  private failure(check: string, detail: string): SimFailure {
    const bugs = this.opts.bugs ? Object.keys(this.opts.bugs).filter((k) => this.opts.bugs![k as keyof SimBugs]) : [];
    const replay = `bun run sim --seed ${this.opts.seed} --steps ${this.opts.steps} --nodes ${this.opts.nodes}${bugs.map((b) => ` --bug ${b}`).join("")}${this.opts.readOnly ? ` --read-only ${this.opts.readOnly}` : ""}${this.opts.profile ? ` --profile ${this.opts.profile}` : ""}${this.opts.storage ? ` --storage ${this.opts.storage}` : ""}${this.opts.witness ? " --witness" : ""} --verbose`;
    return new SimFailure(check, detail, this.opts.seed, this.step, this.trace.slice(), replay);
  }

  private fail(check: string, detail: string): never {
    throw this.failure(check, detail);
  }

  private log(event: string): void {
    const line = `#${this.step} ${event}`;
    if (this.opts.verbose) console.log(line);
    this.trace.push(line);
    if (this.trace.length > (this.opts.traceSize ?? 60)) this.trace.shift();
  }

  // ---------------------------------------------------------------- nodes

  private start(node: SimNode): void {
    node.raft = new TestRaft({
      id: node.id,
      clusterId: node.working.lastIndex() === 0 && node.working.snapshotMeta().index === 0 ? null : "sim",
      storage: node.working,
      rng: new SeededRng(this.rng.int(2 ** 31)),
      applied: node.sm.applied,
      electionTicks: ELECTION_TICKS,
      heartbeatTicks: 2,
      readOnly: this.readOnly,
      msgBytesMax: this.msgBytesMax,
      inflightMax: 8,
      // Small enough that the byte bound, not only the count, throttles appends.
      inflightBytesMax: 3 * this.msgBytesMax,
      unsafe: this.opts.bugs,
      emptyNodeVotes: this.emptyNodeVotes,
      asyncStorageWrites: this.storage !== "sync",
      witnesses: this.opts.witness ? [WITNESS_ID] : undefined,
    });
    node.commitSeen = Math.max(node.commitSeen, node.working.initialState().hardState.commit);
    node.tasks = [];
    node.driver = this.makeDriver(node);
    node.driver.attach(node.raft);
  }

  /** The real driver over fakes: a crash point may fire before any send or apply once faults are on. */
  private makeDriver(n: SimNode): Driver {
    const bug = this.opts.bugs?.applyBeforePersist === true;
    // Dying before the write is the moment a misordered driver loses a vote it already sent: likelier there.
    const crashPoint = (weight = 0.25) => {
      if (this.faultsOn && this.rng.chance(this.crashPointRate * weight)) throw new SimCrash(`${n.id} crashes inside a Ready`);
    };
    return new Driver({
      clock: { now: () => this.step, defer: (fn) => n.tasks.push(fn), after: (fn) => n.tasks.push(fn) },
      log: {
        persist: (w) => {
          crashPoint(1); // before the write: nothing of this Ready is on disk
          n.sync(); // a buggy log store syncs late, at its next Ready
          this.persistLog(n, w, !bug);
        },
        persistAsync:
          this.storage !== "async"
            ? undefined
            : (w, done) => {
                crashPoint(1); // before the write: nothing of this Ready is on disk
                this.checkNewEntries(n, w);
                const ops: DiskOp[] = [];
                const ents = w.entries;
                if (ents.length > 0) ops.push((s) => s.append(ents));
                const hs = w.hardState;
                if (hs) ops.push((s) => s.setHardState(hs));
                for (const op of ops) op(n.working);
                if (n.pending.length > 0) this.stats.pipelinedWrites = (this.stats.pipelinedWrites ?? 0) + 1;
                n.pending.push({ entries: ents, ops, done });
              },
        firstIndex: () => n.working.firstIndex(),
        lastIndex: () => n.working.lastIndex(),
        term: (i) => n.working.term(i),
      },
      transport: {
        send: (m) => {
          crashPoint();
          this.enqueue(n, m);
          return true;
        },
        sendSnapshot: (m) => {
          crashPoint();
          this.enqueue(n, m);
        },
        setClusterId: () => undefined,
      },
      fsm: {
        apply: (entries, conf) => {
          crashPoint();
          const results = this.applyCommitted(n, entries, conf);
          if (conf) n.write((s) => s.setConfState(conf), true);
          return results;
        },
      },
      snapshots: {
        install: (rd) => {
          n.sync();
          if (!bug) this.syncPending(n);
          const snap = rd.snapshot!;
          n.write((s) => s.applySnapshot(snap), !bug);
          this.persistLog(n, rd, !bug);
          this.installSnapshot(n, snap);
        },
      },
      hooks: {
        onApplied: (rd) => this.checkReads(n, rd),
        onAdvanced: (_raft, rd) => {
          this.checkLeader(n);
          this.checkWitness(n, rd);
        },
        onDiskFull: (e) => {
          throw e;
        },
        onFatal: (e) => {
          if (!(e instanceof SimCrash)) throw e;
          n.crashed = true;
        },
      },
      readyRoundsPerTurn: this.readyRounds,
      parallelAppends: this.storage !== "sync",
      unsafe: this.opts.bugs,
    });
  }

  private persistLog(n: SimNode, w: { readonly hardState?: HardState; readonly entries: readonly Entry[] }, syncNow: boolean): void {
    this.checkNewEntries(n, w);
    if (w.entries.length > 0) {
      const ents = w.entries;
      n.write((s) => s.append(ents), syncNow);
    }
    if (w.hardState) {
      const hs = w.hardState;
      n.write((s) => s.setHardState(hs), syncNow);
    }
  }

  private live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up);
  }

  private leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.live()) {
      if (n.raft!.role === "leader" && (!best || n.raft!.term > best.raft!.term)) best = n;
    }
    return best;
  }

  // ---------------------------------------------------------------- actions

  /** Per-seed weights of each action: some seeds are calm, some are chaos, some have slow networks. */
  private weights(): [number, () => void][] {
    const c = this.chaos;
    const tick = 6 + this.tickBias * 30;
    return [
      [this.pool.length > 0 ? 50 : 0, () => this.deliverRandom()],
      [tick, () => this.tickAll()],
      [12, () => this.propose()],
      [5, () => this.read()],
      [this.faultsOn ? 1.2 * c : 0, () => this.crash()],
      [this.faultsOn ? 1.6 * c : 0, () => this.restart()],
      [this.faultsOn ? 1.0 * c : 0, () => this.partition()],
      [this.faultsOn ? 1.6 * c : 0, () => this.heal()],
      [this.faultsOn ? 2.0 * c : 0, () => this.dropRandom()],
      [this.faultsOn ? 2.0 * c : 0, () => this.duplicateRandom()],
      [this.faultsOn && !this.opts.witness ? 3 : 0, () => this.confChange()],
      [this.faultsOn && this.opts.witness ? 1.5 * c : 0, () => this.cutDataFollower()],
      [this.faultsOn ? 1.0 : 0, () => this.transfer()],
      [this.faultsOn ? 2.0 : 0, () => this.compact()],
    ];
  }

  private maybeLeaderFault(): boolean {
    const f = this.leaderFault;
    if (!f || this.step < f.at) return false;
    this.leaderFault = undefined;
    const n = this.nodes.get(f.id);
    if (!n?.raft || n.raft.role !== "leader" || n.raft.term !== f.term) return false;
    if (this.rng.chance(0.5)) {
      this.kill(n, "nemesis: CRASH new leader");
    } else {
      for (const b of this.nodes.keys()) if (b !== n.id) this.blocked.add(`${n.id}>${b}`).add(`${b}>${n.id}`);
      this.log(`nemesis: isolate new leader ${n.id}`);
    }
    return true;
  }

  private randomAction(): void {
    if (this.faultsOn && this.maybeLeaderFault()) return;
    const table = this.weights();
    let total = 0;
    for (const [w] of table) total += w;
    let r = this.rng.next() * total;
    for (const [w, act] of table) {
      if (r < w) return act();
      r -= w;
    }
  }

  private tickAll(): void {
    for (const n of this.live()) n.raft!.tick();
  }

  private propose(): void {
    // Any node that believes it leads gets proposals, stale leaders behind a partition too:
    // that is what grows divergent log tails for later elections to resolve.
    const leaders = this.live().filter((n) => n.raft!.role === "leader");
    const n = this.rng.chance(0.85) && leaders.length > 0 ? this.rng.pick(leaders) : this.rng.pick(this.live().length ? this.live() : [undefined]);
    if (!n?.raft) return;
    const data = `p${++this.proposalSeq}`;
    try {
      // Encoding is the costly part: a node that is not the leader refuses without looking at the bytes.
      const cmd = () => (n.raft!.role === "leader" ? this.command() : REFUSED);
      if (this.rng.chance(0.2)) n.raft.proposeBatch([cmd(), cmd()]);
      else n.raft.propose(cmd());
      if (n.raft.role !== "leader") this.fail("exception", `${n.id} (${n.raft.role}) accepted a proposal`);
      this.log(`${n.id} propose ${data}`);
    } catch (e) {
      if (!(e instanceof NotLeaderError || e instanceof ProposalDroppedError)) throw e;
    }
  }

  /** A real cairn command; its ts is a sequence number, so no two proposals have the same bytes. */
  private command(): Uint8Array {
    const seq = ++this.commandSeq;
    return encodeRandomCommand(this.rng, seq, seq);
  }

  private read(): void {
    const live = this.live();
    if (live.length === 0) return;
    const n = this.rng.pick(live);
    const ctx = `r${++this.readSeq}`;
    try {
      n.raft!.readIndex(ctx);
      this.reads.set(ctx, { node: n.id, commitAtStart: this.globalCommit });
      this.log(`${n.id} readIndex ${ctx} (global commit ${this.globalCommit})`);
    } catch (e) {
      if (!(e instanceof NotLeaderError)) throw e;
    }
  }

  private confChange(): void {
    const l = this.leaderNode();
    if (!l) return;
    const conf = l.raft!.trk.conf;
    const members = allMembers(conf);
    const change = this.pickChange(members, conf.voters, l.raft!);
    if (!change) return;
    try {
      l.raft!.proposeConfChange({ op: "enter", changes: [change] });
      this.stats.confChanges++;
      this.log(`${l.id} propose conf ${change.type} ${change.node}`);
      if (change.type !== "remove" && !this.nodes.has(change.node)) this.addJoiner(change.node);
    } catch (e) {
      if (!(e instanceof ConfChangeError || e instanceof NotLeaderError || e instanceof ProposalDroppedError)) throw e;
    }
  }

  private pickChange(members: NodeId[], voters: readonly NodeId[], leader: Raft): ConfChangeSingle | undefined {
    const max = this.opts.nodes + 2;
    const r = this.rng.next();
    if (r < 0.4 && members.length < max) {
      // Ids are never reused: a removed node never comes back with its old data.
      const node = `n${this.nextJoiner++}`;
      return { type: this.emptyNodeVotes && this.rng.chance(0.5) ? "addVoter" : "addLearner", node };
    }
    const progress = leader.status().progress;
    const learners = members.filter((m) => !voters.includes(m) && (this.emptyNodeVotes || (progress.get(m)?.match ?? 0) > 0));
    if (r < 0.6 && learners.length > 0) return { type: "addVoter", node: this.rng.pick(learners) };
    if (voters.length <= 2 && r < 0.9) return undefined;
    return { type: r < 0.75 ? "addLearner" : "remove", node: this.rng.pick(members) };
  }

  private addJoiner(id: NodeId): void {
    const node = new SimNode(id, new MemoryStorage(), { applied: 0, hash: 0 });
    this.nodes.set(id, node);
    this.universe.push(id);
    this.start(node);
  }

  private transfer(): void {
    const l = this.leaderNode();
    if (!l) return;
    const voters = [...l.raft!.trk.voterIds()].filter((v) => v !== l.id);
    if (voters.length === 0) return;
    const to = this.rng.pick(voters);
    this.stats.transfers++;
    this.log(`${l.id} transfer leadership to ${to}`);
    l.raft!.transferLeadership(to);
  }

  private crash(): void {
    const live = this.live();
    if (live.length === 0) return;
    // Leaders crash half the time: their half-replicated tails are where Raft is subtle.
    const leaders = live.filter((n) => n.raft!.role === "leader");
    const n = leaders.length > 0 && this.rng.chance(0.5) ? this.rng.pick(leaders) : this.rng.pick(live);
    this.kill(n, "CRASH");
  }

  private restart(): void {
    const down = [...this.nodes.values()].filter((n) => !n.up);
    if (down.length === 0) return;
    const n = this.rng.pick(down);
    this.start(n);
    this.log(`${n.id} restart at applied ${n.sm.applied}, last index ${n.working.lastIndex()}`);
  }

  private partition(): void {
    const ids = [...this.nodes.keys()];
    const leader = this.leaderNode();
    if (leader && this.rng.chance(0.3)) {
      for (const b of ids) if (b !== leader.id) this.blocked.add(`${leader.id}>${b}`).add(`${b}>${leader.id}`);
      this.log(`isolate leader ${leader.id}`);
    } else if (this.rng.chance(0.5)) {
      const side = new Set(ids.filter(() => this.rng.chance(0.5)));
      for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
      this.log(`partition {${[...side].join(",")}} | {${ids.filter((i) => !side.has(i)).join(",")}}`);
    } else {
      const a = this.rng.pick(ids);
      const b = this.rng.pick(ids);
      if (a === b) return;
      this.blocked.add(`${a}>${b}`);
      this.log(`one-way cut ${a} -> ${b}`);
    }
  }

  private heal(): void {
    if (this.blocked.size === 0) return;
    this.blocked.clear();
    this.log("heal all partitions");
  }

  private dropRandom(): void {
    if (this.pool.length === 0) return;
    const i = this.rng.int(this.pool.length);
    const f = this.takeAt(i);
    this.lost(f);
  }

  private duplicateRandom(): void {
    if (this.pool.length === 0 || this.pool.length >= POOL_MAX) return;
    this.pool.push(this.rng.pick(this.pool));
  }

  private compact(): void {
    const live = this.live();
    if (live.length === 0) return;
    const n = this.rng.pick(live);
    if (this.isWitness(n)) return this.compactWitness(n);
    const applied = n.sm.applied;
    const snapIndex = n.working.snapshotMeta().index;
    if (applied <= snapIndex || applied > n.durable.lastIndex() || n.unsynced.length > 0 || n.pending.length > 0) return;
    const conf = n.working.initialState().confState;
    const keep = this.rng.int(4);
    n.write((s) => {
      s.createSnapshot(applied, conf);
      s.compact(Math.max(s.firstIndex() - 1, applied - keep));
    }, true);
    n.smSnap = n.sm.snapshot();
    this.stats.snapshots++;
    this.log(`${n.id} snapshot at ${applied}, log compacted to ${Math.max(0, applied - keep)}`);
  }

  // ---------------------------------------------------------------- witness

  private isWitness(n: SimNode): boolean {
    return this.opts.witness === true && n.id === WITNESS_ID;
  }

  /** The witness compacts as its node does (src/node/witness.ts): up to what the core says every data voter holds. */
  private compactWitness(n: SimNode): void {
    const to = Math.min(n.raft!.witnessCompactIndex(), n.sm.applied, n.durable.lastIndex());
    if (to <= n.working.snapshotMeta().index || n.unsynced.length > 0 || n.pending.length > 0) return;
    const conf = n.working.initialState().confState;
    // The snapshot record is only a position (no data behind it): the core never sends it.
    n.write((s) => {
      s.createSnapshot(to, conf);
      s.compact(to);
    }, true);
    this.stats.snapshots++;
    this.log(`${n.id} (witness) compacted its log to ${to}`);
  }

  /** The witness nemesis: a data follower cut off, so the leader and the witness alone commit (then leaders crash as usual). */
  private cutDataFollower(): void {
    const l = this.leaderNode();
    if (!l || this.isWitness(l)) return;
    const other = [...this.nodes.keys()].find((id) => id !== l.id && id !== WITNESS_ID);
    if (!other) return;
    for (const b of this.nodes.keys()) if (b !== other) this.blocked.add(`${other}>${b}`).add(`${b}>${other}`);
    this.log(`witness nemesis: cut data follower ${other} off (leader ${l.id} and the witness commit alone)`);
  }

  /** Rule 3 of src/raft/witness.ts: a data voter never needs a snapshot from the witness. */
  private checkWitness(n: SimNode, rd: Ready): void {
    if (!this.isWitness(n)) return;
    if (rd.softState?.role === "leader") this.stats.witnessLeads = (this.stats.witnessLeads ?? 0) + 1;
    for (const ev of rd.events) {
      if (ev.kind === "dropped" && ev.reason === WITNESS_NO_SNAPSHOT) {
        this.fail("witness rule", `the witness leader ${n.id} would have to send a snapshot (${ev.what}): it compacted entries a data voter lacks`);
      }
    }
  }

  // ---------------------------------------------------------------- network

  private takeAt(i: number): InFlight {
    const f = this.pool[i]!;
    this.pool[i] = this.pool[this.pool.length - 1]!;
    this.pool.pop();
    return f;
  }

  private lost(f: InFlight): void {
    if (f.msg.type === "snap") this.nodes.get(f.msg.from)?.raft?.reportSnapshot(f.msg.to, false);
  }

  private deliverRandom(): void {
    this.deliver(this.takeAt(this.rng.int(this.pool.length)));
  }

  private deliver(f: InFlight): void {
    const m = f.msg;
    const to = this.nodes.get(m.to);
    const lossy = this.faultsOn && this.rng.chance(this.lossRate);
    if (!to?.raft || lossy || this.blocked.has(`${m.from}>${m.to}`)) {
      this.lost(f);
      return;
    }
    this.stats.delivered++;
    if (f.snap) {
      to.staged.set(m.snapshot!.index, f.snap);
      this.nodes.get(m.from)?.raft?.reportSnapshot(m.to, true);
    }
    if (this.opts.verbose) this.log(`deliver ${describe(m)}`);
    to.raft.step(m);
  }

  /** Puts a message on the network; a snapshot whose data was replaced meanwhile fails (reported after the Ready). */
  private enqueue(n: SimNode, msg: Message): void {
    if (this.pool.length >= POOL_MAX) this.lost(this.takeAt(this.rng.int(this.pool.length)));
    let snap: SmSnapshot | undefined;
    if (msg.type === "snap") {
      if (n.smSnap.applied !== msg.snapshot!.index) {
        n.failedSnaps.push(msg.to);
        return;
      }
      snap = n.smSnap;
    }
    this.pool.push({ msg, snap });
  }

  // ---------------------------------------------------------------- ready

  private processReadies(p: number, writeDone = this.writeDoneRate): void {
    for (const n of this.live()) {
      if (n.pending.length > 0 && this.faultsOn && this.rng.chance(this.inFlightCrashRate)) {
        this.kill(n, "CRASH with a write in flight");
        continue;
      }
      if (n.pending.length > 0 && this.rng.chance(writeDone)) this.completeWrite(n);
      if (n.up && this.rng.chance(p) && n.raft!.hasReady()) this.processReady(n);
    }
  }

  /** One turn of the node's event loop: the driver handles what the core has ready (readyRounds Readies at most). */
  private processReady(n: SimNode): void {
    n.driver!.schedule();
    const tasks = n.tasks;
    n.tasks = [];
    for (const t of tasks) {
      t();
      if (n.crashed) break;
    }
    this.afterTurn(n);
  }

  /** After a turn: a crash point that fired kills the node; snapshots that could not leave are reported. */
  private afterTurn(n: SimNode): void {
    if (n.crashed) {
      n.crashed = false;
      this.kill(n, "CRASH inside a Ready");
      return;
    }
    const failed = n.failedSnaps;
    n.failedSnaps = [];
    for (const to of failed) n.raft!.reportSnapshot(to, false);
  }

  /** The process dies: writes not yet durable are lost, except that the one in flight may be torn (a prefix of its entries kept, its hard state lost). */
  private kill(n: SimNode, why: string): void {
    const w = n.pending[0];
    let torn = "";
    if (w && w.entries.length > 0 && this.rng.chance(this.tearRate)) {
      const kept = w.entries.slice(0, 1 + this.rng.int(w.entries.length));
      n.durable.append(kept);
      torn = `, torn write keeps ${kept[0]!.index}..${kept[kept.length - 1]!.index} of ${w.entries[0]!.index}..${w.entries[w.entries.length - 1]!.index}`;
    }
    n.crash();
    this.stats.crashes++;
    this.log(`${n.id} ${why} (unsynced writes lost${torn})`);
  }

  /**
   * Storage "async": a synchronous write (a snapshot install, committed with synchronous=FULL) makes
   * every earlier write in flight durable too: its fsync covers the whole WAL before it. Their
   * completions still come later, in order; a crash no longer loses or tears them, and their old
   * hard states are not applied over the snapshot's when they complete.
   */
  private syncPending(n: SimNode): void {
    n.pending = n.pending.map((w) => {
      for (const op of w.ops) op(n.durable);
      return { entries: [], ops: [], done: w.done };
    });
  }

  /** Storage "async": the node's oldest write in flight becomes durable and the driver hears of it. */
  private completeWrite(n: SimNode): void {
    const w = n.pending.shift();
    if (!w) return;
    for (const op of w.ops) op(n.durable);
    w.done();
    this.afterTurn(n);
  }

  private installSnapshot(n: SimNode, snap: { readonly index: number; readonly conf: ConfState }): void {
    const data = n.staged.get(snap.index);
    if (!data) this.fail("snapshot data", `${n.id} installs snapshot ${snap.index} that it never received`);
    n.staged.clear();
    if (this.isWitness(n)) {
      // A witness takes only the snapshot's position from a data leader, never its data.
      n.sm.install({ applied: snap.index, hash: "", tables: new Map() }, snap.conf);
      this.log(`${n.id} (witness) took snapshot position ${snap.index}`);
      return;
    }
    if (data.applied !== snap.index) this.fail("snapshot data", `${n.id} installs snapshot ${snap.index} with state machine data at ${data.applied}`);
    this.checkHash(n.id, data.applied, data.hash);
    n.sm.install(data, snap.conf);
    n.smSnap = data;
    this.log(`${n.id} installed snapshot at ${snap.index}`);
  }

  /** The real state machine applies the batch; the running hash of its rows is compared at the batch's end. */
  private applyCommitted(n: SimNode, committed: readonly Entry[], conf: ConfState | undefined): Map<number, unknown> {
    let applied = n.sm.applied;
    for (const e of committed) {
      if (e.index <= applied) continue; // covered by an installed snapshot
      if (e.index !== applied + 1) this.fail("state machine safety", `${n.id} applies ${e.index} after ${applied}: an entry skipped`);
      applied = e.index;
      const ident = identOf(e);
      const prev = this.appliedIdent[e.index];
      if (prev === undefined) {
        this.appliedIdent[e.index] = ident;
        this.stats.commits++;
      } else if (prev !== ident) {
        this.fail("state machine safety", `${n.id} applies "${ident}" at ${e.index}, another node applied "${prev}"`);
      }
    }
    const results = n.sm.apply(committed, conf);
    if (n.sm.applied !== applied) this.fail("state machine safety", `${n.id} state machine is at ${n.sm.applied} after applying up to ${applied}`);
    // A witness has no state to hash (it still checks the entries it applies, above).
    if (committed.length > 0 && !this.isWitness(n)) this.checkHash(n.id, applied, n.sm.hash);
    return results;
  }

  private checkHash(id: NodeId, index: number, hash: string): void {
    const known = this.appliedHash[index];
    if (known === undefined) this.appliedHash[index] = hash;
    else if (known !== hash) this.fail("state machine safety", `${id} state at ${index} differs from another node's state at ${index}`);
  }

  // ---------------------------------------------------------------- checkers

  /** Log matching (§5.3) by induction: an (index, term) pair always names the same entry with the same predecessor term. */
  private checkNewEntries(n: SimNode, rd: { readonly hardState?: HardState; readonly entries: readonly Entry[] }): void {
    const raft = n.raft!;
    for (const e of rd.entries) {
      const prevTerm = raft.log.termOr0(e.index - 1);
      const key = `${e.index}:${e.term}`;
      const val = `${identOf(e)}|${prevTerm}`;
      const seen = this.logIdent.get(key);
      if (seen === undefined) this.logIdent.set(key, val);
      else if (seen !== val) this.fail("log matching", `${n.id} has ${key} = ${val}, another log has ${seen}`);
    }
    const commit = rd.hardState?.commit ?? raft.log.committed;
    if (commit > n.commitSeen) {
      const lo = Math.max(n.commitSeen + 1, raft.log.firstIndex());
      if (lo <= commit) this.recordCommitted(n, raft.log.slice(lo, commit + 1, Infinity));
      n.commitSeen = commit;
    }
  }

  private recordCommitted(n: SimNode, ents: readonly Entry[]): void {
    for (const e of ents) {
      const ident = identOf(e);
      const prev = this.committedIdent[e.index];
      if (prev === undefined) this.committedIdent[e.index] = ident;
      else if (prev !== ident) this.fail("committed entry changed", `${n.id} commits "${ident}" at ${e.index}, "${prev}" was committed there before`);
      if (e.index > this.globalCommit) this.globalCommit = e.index;
    }
  }

  /** Election safety (§5.2) and leader completeness (§5.4). */
  private checkLeader(n: SimNode): void {
    const raft = n.raft!;
    if (raft.role !== "leader" || n.wasLeaderInTerm === raft.term) return;
    n.wasLeaderInTerm = raft.term;
    const other = this.leaderOfTerm.get(raft.term);
    if (other !== undefined && other !== n.id) this.fail("election safety", `${n.id} and ${other} are both leaders of term ${raft.term}`);
    this.leaderOfTerm.set(raft.term, n.id);
    this.stats.elections++;
    // Nemesis: new leaders are the most fragile moment (old-term entries half-replicated).
    if (this.faultsOn && this.rng.chance(0.15 * this.chaos)) this.leaderFault = { id: n.id, term: raft.term, at: this.step + this.rng.int(40) };
    this.log(`${n.id} is LEADER of term ${raft.term} (last ${raft.log.lastIndex()}, commit ${raft.log.committed})`);
    const lo = Math.max(1, raft.log.firstIndex());
    const hi = Math.min(this.globalCommit, raft.log.lastIndex());
    if (raft.log.lastIndex() < this.globalCommit) {
      this.fail("leader completeness", `${n.id} leads term ${raft.term} with last index ${raft.log.lastIndex()} < committed ${this.globalCommit}`);
    }
    if (lo > hi) return;
    const ents = raft.log.slice(lo, hi + 1, Infinity);
    for (const e of ents) {
      const c = this.committedIdent[e.index];
      if (c !== undefined && c !== identOf(e)) {
        this.fail("leader completeness", `${n.id} leads term ${raft.term} with "${identOf(e)}" at ${e.index}, but "${c}" was committed there`);
      }
    }
  }

  private checkReads(n: SimNode, rd: Ready): void {
    for (const rs of rd.readStates) {
      const r = this.reads.get(rs.ctx);
      if (!r) continue; // duplicate answer
      this.reads.delete(rs.ctx);
      this.stats.reads++;
      if (rs.index < r.commitAtStart) {
        this.fail("linearizable read", `${n.id} read ${rs.ctx} at index ${rs.index}, but ${r.commitAtStart} was committed when it began`);
      }
    }
  }

  // ---------------------------------------------------------------- liveness

  /** Faults stop: heal, restart everyone, and require progress within a bound. */
  private liveness(): void {
    this.faultsOn = false;
    this.blocked.clear();
    this.log("--- faults stop: heal, restart all, reliable network ---");
    for (const n of this.nodes.values()) if (!n.up) this.start(n);
    const tickMax = 40 * ELECTION_TICKS;
    let marker: { text: string; term: number } | undefined;
    for (let t = 0; t < tickMax; t++) {
      this.tickAll();
      this.drain();
      const l = this.leaderNode();
      if (!l) continue;
      if (marker?.term !== l.raft!.term) marker = this.proposeMarker(l);
      if (marker && this.converged(l, marker.text)) {
        this.stats.livenessTicks = t;
        return;
      }
    }
    const l = this.leaderNode();
    for (const n of this.nodes.values()) {
      const st = n.raft!.status();
      this.log(`${n.id}: ${st.role} t${st.term} lead=${st.leader} commit=${st.commit} applied=${st.applied} sm=${n.sm.applied} last=${st.lastIndex} first=${st.firstIndex} conf=${JSON.stringify(st.conf)} progress=${JSON.stringify([...st.progress])}`);
    }
    this.fail("liveness", l ? `leader ${l.id} did not commit a new proposal on every member within ${tickMax} ticks` : `no leader within ${tickMax} ticks after faults stopped`);
  }

  private proposeMarker(l: SimNode): { text: string; term: number } | undefined {
    const data = encodeCommand({ op: "changes", ts: ++this.commandSeq, items: [{ data: { live: l.raft!.term }, tags: ["live"] }] });
    const text = identOfData(data);
    try {
      l.raft!.propose(data);
      this.log(`${l.id} propose liveness marker ${text}`);
      this.drain();
      return { text, term: l.raft!.term };
    } catch (e) {
      if (e instanceof NotLeaderError || e instanceof ProposalDroppedError) return undefined;
      throw e;
    }
  }

  private drain(): void {
    for (let i = 0; i < 10_000; i++) {
      this.processReadies(1, 1);
      if (this.pool.length === 0 && !this.live().some((n) => n.raft!.hasReady() || n.pending.length > 0)) return;
      while (this.pool.length > 0) this.deliver(this.pool.shift()!);
    }
    this.fail("liveness", "messages kept flowing for 10000 rounds without settling");
  }

  private converged(l: SimNode, marker: string): boolean {
    const idx = this.appliedIdent.indexOf(marker);
    if (idx < 0) return false;
    const members = allMembers(l.raft!.trk.conf);
    return members.every((id) => {
      const n = this.nodes.get(id);
      return n?.up === true && n.sm.applied >= idx;
    });
  }
}

function describe(m: Message): string {
  const extra = m.type === "app" ? ` prev=${m.index}/${m.logTerm} n=${m.entries.length} commit=${m.commit}` : m.type.endsWith("Resp") ? ` idx=${m.index}${m.reject ? " REJECT" : ""}` : "";
  return `${m.type} ${m.from}->${m.to} t${m.term}${extra}`;
}

/** Runs one seed; returns the failure instead of throwing. */
export function runSeed(opts: SimOptions): { ok: true; stats: SimStats } | { ok: false; failure: SimFailure } {
  try {
    const sim = new Simulator(opts);
    try {
      return { ok: true, stats: sim.run() };
    } finally {
      sim.close();
    }
  } catch (e) {
    if (e instanceof SimFailure) return { ok: false, failure: e };
    throw e;
  }
}

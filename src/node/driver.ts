/**
 * The Ready loop: turns the Raft core's Ready into effects on small
 * interfaces (a clock, a log store, a transport, a state machine, a snapshot
 * store). The binary runs it over SQLite and TLS (node.ts wires them); the
 * simulator (test/sim/) runs the same class over fakes.
 *
 * THE ORDER OF ONE READY (the contract this file exists to keep):
 *
 *   1. persist   the snapshot (with the state machine's data, one
 *                transaction), the new entries, the hard state and a newly
 *                learned cluster id: durable when persist() returns.
 *                A vote or a term must be on disk before any message that
 *                reveals it leaves; an entry must be on disk before this node
 *                acknowledges it (append response) or counts itself for it.
 *                Writers waiting for "saved" (?wait=accepted) settle here.
 *   2. send      the messages. With parallelAppends (the core runs with
 *                asyncStorageWrites) a leader's appends and heartbeats leave
 *                before step 1's fsync (after an asynchronous write's commit,
 *                before a synchronous persist) when the Ready changes no term or vote (thesis
 *                §10.2.1): the followers' fsyncs overlap the leader's, and the
 *                leader counts itself toward the commit only once persisted()
 *                reports its write durable (after step 1). Everything else
 *                (votes, append responses) still waits for the write.
 *   3. apply     the committed entries, with the applied index in the same
 *                transaction as their effects (exactly once across crashes).
 *   4. advance   tell the core the Ready is done; only then may it produce
 *                the next one.
 *
 * An asynchronous log store (persistAsync: the write is in the store at once,
 * durable later, completions in issue order) keeps the same contract with
 * writes pipelined (etcd raft's asynchronous storage writes): the Ready is
 * advanced at once (the core marks its entries in progress) and the next
 * Ready may be taken while the write is in flight, up to writesInFlightMax.
 * Each Ready's messages that wait for its write, its "saved" waiters and
 * persisted() follow the completion of its write AND of every earlier one
 * (a flight queue drained from its head), so an acknowledgement never gets
 * ahead of a write it depends on. While a write that changes the term or
 * vote is in flight nothing leaves early. A new core (after a full disk) takes
 * no Ready before the writes of the old one complete: it reads them from the
 * store as if durable. Committed entries are applied only once durable here
 * (the core hands out no others).
 *
 * A full disk (DiskFullError from the log store) stops the Ready before
 * anything was sent or applied: hooks.onDiskFull rebuilds the core from what
 * is durable. Anything else a Ready throws goes to hooks.onFatal (crash-only).
 *
 * Group commit: schedule() defers the pass to the next turn of the event loop
 * (clock.defer), so every proposal and peer frame that arrived in this turn is
 * in one Ready, one fsync.
 */
import { DiskFullError } from "../platform/sqlite.ts";
import type { ConfState, Entry, HardState, Message, Raft, Ready } from "../raft/index.ts";
import { assert } from "../util/assert.ts";
import { ProposalLostError } from "./errors.ts";

/** Time as the loop sees it: the binary's is performance.now/setImmediate/setTimeout, the simulator's is fake. */
export interface Clock {
  now(): number;
  /** Runs fn in a later turn of the event loop, after the I/O already queued (setImmediate). */
  defer(fn: () => void): void;
  /** Runs fn after ms milliseconds. */
  after(fn: () => void, ms: number): void;
}

export interface LogWrite {
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
  readonly clusterId?: string;
}

/** The part of the log store (src/storage/store.ts RaftStore) the loop writes and reads. */
export interface DriverLog {
  /** One Ready's log writes in one transaction; durable on return. */
  persist(w: LogWrite): void;
  /**
   * Optional asynchronous form (used instead of persist when present): starts the write and
   * calls done once it is durable (or failed), in the order the writes were started; never after
   * the process died. Only with parallelAppends (the core must take persisted()).
   */
  persistAsync?(w: LogWrite, done: (err?: unknown) => void): void;
  firstIndex(): number;
  lastIndex(): number;
  term(i: number): number;
}

export interface DriverTransport {
  /** False: the peer is unreachable now (the core then slows down its appends to it). */
  send(m: Message): boolean;
  /** A snapshot message: the transfer reports its outcome to the core itself (reportSnapshot), later. */
  sendSnapshot(m: Message): void;
  /** The cluster id this node learned (the transport's handshake checks it). */
  setClusterId(id: string): void;
}

export interface DriverStateMachine {
  /** Applies committed entries, the applied index and configuration in the same transaction; results by index. */
  apply(entries: readonly Entry[], conf?: ConfState): Map<number, unknown>;
}

export interface DriverSnapshots {
  /** Persists a Ready that carries a snapshot: the state machine's data, the log reset, entries and hard state, one transaction. */
  install(rd: Ready): void;
}

export interface DriverHooks {
  /** Before the Ready is taken (the node starts a read round here). */
  beforeReady?(raft: Raft): void;
  /** After apply, before advance: the node settles proposal and read waiters. */
  onApplied?(rd: Ready, results: Map<number, unknown>): void;
  /** After advance: events and leader changes. */
  onAdvanced?(raft: Raft, rd: Ready): void;
  /** The log store refused the Ready for lack of space; nothing of it was sent or applied. */
  onDiskFull(err: DiskFullError): void;
  /** The loop cannot go on (any other error in a Ready). */
  onFatal(err: unknown): void;
}

/** Test only: known driver bugs, for the simulator's own tests (test/sim/bugs.test.ts). Never set in production. */
export interface DriverBugs {
  /** Send the Ready's messages (votes, append acks) before its hard state and entries are persisted. */
  readonly sendBeforePersist?: boolean;
  /** persistAsync: send the messages that wait for the write (votes, append acks) when it starts, not when it completes. */
  readonly ackBeforeDurable?: boolean;
}

export interface DriverOptions {
  readonly clock: Clock;
  readonly log: DriverLog;
  readonly transport: DriverTransport;
  readonly fsm: DriverStateMachine;
  readonly snapshots: DriverSnapshots;
  readonly hooks: DriverHooks;
  /** Readies handled per turn before the loop yields to timers and sockets. */
  readonly readyRoundsPerTurn?: number;
  /** Writers waiting for their entry to be saved, at most. */
  readonly persistWaitersMax?: number;
  /** The core runs with asyncStorageWrites: leader appends before its own fsync, persisted() after it. */
  readonly parallelAppends?: boolean;
  /** Asynchronous log store: Readies whose writes may be in flight at once (then the loop waits for the oldest). */
  readonly writesInFlightMax?: number;
  readonly unsafe?: DriverBugs;
}

/** Messages that reveal nothing that must be durable first, when the Ready changes no term or vote: a leader's appends and heartbeats. */
function mayLeaveBeforeWrite(m: Message): boolean {
  return m.type === "app" || m.type === "heartbeat";
}

interface PersistWaiter {
  readonly index: number;
  readonly term: number;
  resolve(): void;
  reject(e: Error): void;
}

/** One Ready's write, from its start to the point where everything that waited for it has happened. */
interface Flight {
  readonly raft: Raft;
  /** Messages that wait for this write (and every earlier one) to be durable. */
  readonly late: readonly Message[];
  readonly clusterId?: string;
  /** The write's last entry: persisted() takes it (parallelAppends only). */
  readonly last?: { readonly index: number; readonly term: number };
  /** Saved-entry waiters up to this index settle when the flight lands. */
  readonly settleTo: number;
  /** The write changes the term or vote: nothing leaves early while it is in flight. */
  readonly changesVote: boolean;
  done: boolean;
  /** The write failed (the node stops, or a full disk replaces the core): nothing that waited for it happens. */
  failed: boolean;
}

export const WRITES_IN_FLIGHT_MAX_DEFAULT = 32;

export class Driver {
  private raftCore: Raft | undefined;
  private scheduled = false;
  private stopped = false;
  private persistWaiters: PersistWaiter[] = [];
  /** Writes started, oldest first; the head is removed once it and everything before it is durable. */
  private flights: Flight[] = [];
  /** Flights in the queue that change the term or vote. */
  private voteFlights = 0;
  /** Term and vote of the last write started (durable or not): a Ready that changes them sends nothing early. */
  private handedTerm = -1;
  private handedVote = "";
  private readonly roundsMax: number;
  private readonly flightsMax: number;
  readonly persistWaitersMax: number;

  constructor(private readonly o: DriverOptions) {
    this.roundsMax = o.readyRoundsPerTurn ?? 64;
    this.persistWaitersMax = o.persistWaitersMax ?? 100_000;
    this.flightsMax = o.writesInFlightMax ?? WRITES_IN_FLIGHT_MAX_DEFAULT;
    assert(this.flightsMax >= 1, () => `writesInFlightMax ${this.flightsMax} must be at least 1`);
  }

  get raft(): Raft | undefined {
    return this.raftCore;
  }

  /** Writes started and not yet landed (tests read it). */
  writesInFlight(): number {
    return this.flights.length;
  }

  /** The core to drive (a new one after a restart from disk, or after a full disk). */
  attach(raft: Raft): void {
    this.raftCore = raft;
    this.handedTerm = -1; // unknown until this core's first write
    this.schedule();
  }

  /** No Ready is handled after this. */
  stop(): void {
    this.stopped = true;
  }

  /** Something stepped the core: handle its Ready in the next turn (with everything else that arrives in this one). */
  schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    this.o.clock.defer(() => {
      this.scheduled = false;
      this.guarded(() => this.runReady());
    });
  }

  private guarded(fn: () => void): void {
    if (this.stopped) return;
    try {
      fn();
    } catch (e) {
      this.o.hooks.onFatal(e);
    }
  }

  /** False while the loop must wait for a write to land: the queue is full, or an old core's writes are in flight. */
  private mayTakeReady(raft: Raft): boolean {
    if (this.flights.length >= this.flightsMax) return false;
    // A new core read the old one's writes from the store as if durable: it must not act on them before they are.
    return this.flights.length === 0 || this.flights[this.flights.length - 1]!.raft === raft;
  }

  /** Handles up to readyRoundsPerTurn Readies, then yields (the rest in a later turn). */
  runReady(): void {
    const raft = this.raftCore;
    if (!raft || this.stopped || !this.mayTakeReady(raft)) return;
    this.o.hooks.beforeReady?.(raft);
    for (let round = 0; round < this.roundsMax && raft.hasReady(); round++) {
      if (!this.handleReady(raft, raft.ready())) return;
      if (this.raftCore !== raft || this.stopped || !this.mayTakeReady(raft)) return; // a hook replaced the core, the node stopped, or the queue is full
    }
    if (raft.hasReady()) this.o.clock.after(() => this.schedule(), 0); // let timers and sockets run between batches
  }

  /**
   * One Ready, in contract order: the leader's appends (parallelAppends, unless a term or vote is
   * being written), the write, the rest of the messages once the write and every earlier one are
   * durable, apply, advance, persisted(). Returns false if the disk refused it.
   */
  private handleReady(raft: Raft, rd: Ready): boolean {
    const bugs = this.o.unsafe;
    const hs = rd.hardState;
    const changesVote = hs !== undefined && (hs.term !== this.handedTerm || hs.vote !== this.handedVote);
    const holdAll = !this.o.parallelAppends || changesVote || this.voteFlights > 0 || rd.snapshot !== undefined;
    const early = bugs?.sendBeforePersist ? rd.messages : holdAll ? [] : rd.messages.filter(mayLeaveBeforeWrite);
    const late = early === rd.messages ? [] : early.length === 0 ? rd.messages : rd.messages.filter((m) => !mayLeaveBeforeWrite(m));
    const last = rd.entries[rd.entries.length - 1];
    let landed: Flight[];
    let results: Map<number, unknown>;
    // An asynchronous write is committed when persistAsync returns (only its fsync comes later): the
    // early messages leave after it, so a write refused for a full disk sent nothing (its writers are
    // told it was not made; entries already at the followers could still be committed by them).
    // A synchronous persist includes its fsync: they leave before it, to overlap the followers' fsyncs.
    const earlyAfterCommit = this.writesAsync(rd) && !bugs?.sendBeforePersist;
    try {
      if (!earlyAfterCommit) this.send(raft, rd.clusterId, early);
      const flight = this.write(raft, rd, { late, changesVote, last });
      if (earlyAfterCommit) this.send(raft, rd.clusterId, early);
      if (hs) [this.handedTerm, this.handedVote] = [hs.term, hs.vote];
      this.flights.push(flight);
      if (changesVote) this.voteFlights++;
      landed = this.land();
      results = this.o.fsm.apply(rd.committedEntries, rd.confState);
    } catch (e) {
      if (e instanceof DiskFullError) {
        this.o.hooks.onDiskFull(e);
        return false;
      }
      throw e;
    }
    this.o.hooks.onApplied?.(rd, results);
    raft.advance(rd);
    this.reportPersisted(landed);
    this.o.hooks.onAdvanced?.(raft, rd);
    return true;
  }

  /** The Ready's write goes to persistAsync (committed at once, durable later). */
  private writesAsync(rd: Ready): boolean {
    return this.o.parallelAppends === true && this.o.log.persistAsync !== undefined && !rd.snapshot;
  }

  /** Starts (or makes) the Ready's write; the flight is done at once unless the log store completes it later. */
  private write(raft: Raft, rd: Ready, o: { late: readonly Message[]; changesVote: boolean; last?: Entry }): Flight {
    const w: LogWrite = { hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId };
    const async = this.writesAsync(rd);
    const early = async && this.o.unsafe?.ackBeforeDurable === true;
    if (early) this.send(raft, rd.clusterId, o.late);
    const flight: Flight = {
      raft,
      late: early ? [] : o.late,
      clusterId: rd.clusterId,
      last: this.o.parallelAppends && o.last ? { index: o.last.index, term: o.last.term } : undefined,
      settleTo: o.last?.index ?? 0,
      changesVote: o.changesVote,
      done: !async,
      failed: false,
    };
    if (rd.snapshot) {
      this.o.snapshots.install(rd);
      return { ...flight, settleTo: this.o.log.lastIndex() };
    }
    if (!async) {
      this.o.log.persist(w);
      return flight;
    }
    let started = false;
    this.o.log.persistAsync!(w, (err) => {
      flight.done = true;
      flight.failed = err !== undefined;
      if (!started) {
        if (err !== undefined) throw err; // at once, inside persistAsync: handled by the caller like persist()'s
        return;
      }
      this.guarded(() => this.onWriteDone(flight, err));
    });
    started = true;
    return flight;
  }

  /** An asynchronous write completed (in issue order): what waited for it and for the earlier ones happens now. */
  private onWriteDone(flight: Flight, err: unknown): void {
    if (this.stopped) return;
    if (err !== undefined) {
      if (!(err instanceof DiskFullError) || flight.raft !== this.raftCore) throw err;
      this.o.hooks.onDiskFull(err);
      // The hook replaced the core: the failed flight (and every other done one of the old core) is
      // dropped now, or a failed last flight would stay at the head and the new core never take a Ready.
      this.land();
      return this.schedule();
    }
    assert(this.flights.indexOf(flight) >= 0, "a write completed that was never started, or completed twice");
    this.reportPersisted(this.land());
    this.schedule();
  }

  /**
   * Removes the flights at the head that are durable: settles their saved-entry waiters and sends
   * their late messages, in issue order. Returns them for persisted() (which must wait until no
   * Ready is out). Flights of a core that was replaced are dropped.
   */
  private land(): Flight[] {
    const landed: Flight[] = [];
    while (this.flights.length > 0 && this.flights[0]!.done) {
      const f = this.flights.shift()!;
      if (f.changesVote) this.voteFlights--;
      if (f.failed || f.raft !== this.raftCore || this.stopped) continue;
      if (f.settleTo > 0) this.settlePersisted(f.settleTo);
      this.send(f.raft, f.clusterId, f.late);
      landed.push(f);
    }
    return landed;
  }

  private reportPersisted(landed: readonly Flight[]): void {
    for (const f of landed) if (f.last && f.raft === this.raftCore && !this.stopped) f.raft.persisted(f.last);
  }

  private send(raft: Raft, clusterId: string | undefined, msgs: readonly Message[]): void {
    if (clusterId !== undefined) this.o.transport.setClusterId(clusterId);
    for (const m of msgs) {
      if (m.type === "snap") this.o.transport.sendSnapshot(m);
      else if (!this.o.transport.send(m)) raft.reportUnreachable(m.to);
    }
  }

  // ---------------------------------------------------------------- saved-entry waiters

  /** Resolves once the entry (index, term) is in the durable log; ProposalLostError if another entry took its slot. */
  waitPersisted(at: { index: number; term: number }): Promise<void> {
    return new Promise<void>((resolve, reject) => this.persistWaiters.push({ index: at.index, term: at.term, resolve, reject }));
  }

  persistWaiting(): number {
    return this.persistWaiters.length;
  }

  /** Fails every writer waiting for "saved" (the core that held their entries is gone, or the node stops). */
  failPersistWaiters(err: Error): void {
    const waiting = this.persistWaiters;
    this.persistWaiters = [];
    for (const w of waiting) w.reject(err);
  }

  /** The log is durable through `upTo` (a write that landed): waiters at or below it settle. */
  private settlePersisted(upTo: number): void {
    if (this.persistWaiters.length === 0) return;
    const log = this.o.log;
    const done = this.persistWaiters.filter((a) => a.index <= upTo);
    if (done.length === 0) return;
    this.persistWaiters = this.persistWaiters.filter((a) => a.index > upTo);
    for (const a of done) {
      // Saved means saved with its own term: a newer leader's entry at that index is not it.
      if (a.index >= log.firstIndex() && a.index <= log.lastIndex() && log.term(a.index) === a.term) a.resolve();
      else a.reject(new ProposalLostError(a.index));
    }
  }
}

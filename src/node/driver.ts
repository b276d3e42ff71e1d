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
 *                BEFORE step 1 when the Ready changes no term or vote (thesis
 *                §10.2.1): the followers' fsyncs overlap the leader's, and the
 *                leader counts itself toward the commit only once persisted()
 *                reports its write durable (after step 1). Everything else
 *                (votes, append responses) still waits for the write.
 *   3. apply     the committed entries, with the applied index in the same
 *                transaction as their effects (exactly once across crashes).
 *   4. advance   tell the core the Ready is done; only then may it produce
 *                the next one.
 *
 * An asynchronous log store (persistAsync: the write completes later, in
 * issue order) keeps the same contract: the Ready is advanced at once (the
 * core marks its entries in progress), its messages that wait for the write
 * and persisted() follow the completion; at most one write is in flight, and
 * no Ready is taken before it completes. Committed entries are applied only
 * once durable here (the core hands out no others).
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

export class Driver {
  private raftCore: Raft | undefined;
  private scheduled = false;
  private stopped = false;
  private persistWaiters: PersistWaiter[] = [];
  /** An asynchronous write is in flight: no Ready is taken until it completes. */
  private writing = false;
  /** Term and vote as last made durable: a Ready that changes them sends nothing early. */
  private durableTerm = -1;
  private durableVote = "";
  private readonly roundsMax: number;
  readonly persistWaitersMax: number;

  constructor(private readonly o: DriverOptions) {
    this.roundsMax = o.readyRoundsPerTurn ?? 64;
    this.persistWaitersMax = o.persistWaitersMax ?? 100_000;
  }

  get raft(): Raft | undefined {
    return this.raftCore;
  }

  /** The core to drive (a new one after a restart from disk, or after a full disk). */
  attach(raft: Raft): void {
    this.raftCore = raft;
    this.durableTerm = -1; // unknown until this core's first write
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

  /** Handles up to readyRoundsPerTurn Readies, then yields (the rest in a later turn). */
  runReady(): void {
    const raft = this.raftCore;
    if (!raft || this.stopped || this.writing) return;
    this.o.hooks.beforeReady?.(raft);
    for (let round = 0; round < this.roundsMax && raft.hasReady(); round++) {
      const rd = raft.ready();
      if (!(this.o.parallelAppends ? this.handleReadyParallel(raft, rd) : this.handleReady(raft, rd))) return;
      if (this.raftCore !== raft || this.stopped || this.writing) return; // a hook replaced the core or stopped the node
    }
    if (raft.hasReady()) this.o.clock.after(() => this.schedule(), 0); // let timers and sockets run between batches
  }

  /**
   * One Ready with parallelAppends: the leader's appends first (unless the Ready changes the term
   * or vote), then the write, then (once it is durable) the rest and persisted().
   */
  private handleReadyParallel(raft: Raft, rd: Ready): boolean {
    const hs = rd.hardState;
    const revealsVote = hs !== undefined && (hs.term !== this.durableTerm || hs.vote !== this.durableVote);
    const early = revealsVote || rd.snapshot || this.o.unsafe?.sendBeforePersist ? [] : rd.messages.filter(mayLeaveBeforeWrite);
    const late = early.length === 0 ? rd.messages : rd.messages.filter((m) => !mayLeaveBeforeWrite(m));
    const last = rd.entries[rd.entries.length - 1];
    const persisted = (): void => {
      if (hs) [this.durableTerm, this.durableVote] = [hs.term, hs.vote];
      if (last && this.raftCore === raft && !this.stopped) raft.persisted({ index: last.index, term: last.term });
    };
    let results: Map<number, unknown>;
    let durable = true;
    let lateSent = this.o.unsafe?.sendBeforePersist === true;
    try {
      this.send(raft, rd, lateSent ? rd.messages : early);
      if (rd.snapshot) this.o.snapshots.install(rd);
      else if (this.o.log.persistAsync) {
        durable = this.startWrite(raft, rd, { late, persisted });
        lateSent ||= this.o.unsafe?.ackBeforeDurable === true;
      } else this.o.log.persist({ hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId });
      if (durable) {
        this.settlePersisted();
        if (!lateSent) this.send(raft, rd, late);
      }
      // Only entries durable here are handed out to apply (asyncStorageWrites), so apply need not wait.
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
    if (durable) persisted();
    this.o.hooks.onAdvanced?.(raft, rd);
    return true;
  }

  /** Starts an asynchronous write; returns true if it completed at once. */
  private startWrite(raft: Raft, rd: Ready, then: { late: readonly Message[]; persisted: () => void }): boolean {
    let sync = true;
    let done = false;
    this.writing = true;
    if (this.o.unsafe?.ackBeforeDurable) this.send(raft, rd, then.late);
    this.o.log.persistAsync!({ hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId }, (err) => {
      done = true;
      this.writing = false;
      if (sync || this.stopped || this.raftCore !== raft) {
        if (sync && err !== undefined) throw err; // at once: handled by the caller like persist()'s
        return;
      }
      this.guarded(() => {
        if (err instanceof DiskFullError) return this.o.hooks.onDiskFull(err);
        if (err !== undefined) throw err;
        this.settlePersisted();
        if (!this.o.unsafe?.ackBeforeDurable) this.send(raft, rd, then.late);
        then.persisted();
        this.schedule();
      });
    });
    sync = false;
    return done;
  }

  /** One Ready, in contract order. Returns false if the disk refused it. */
  private handleReady(raft: Raft, rd: Ready): boolean {
    let results: Map<number, unknown>;
    try {
      if (this.o.unsafe?.sendBeforePersist) this.send(raft, rd, rd.messages);
      if (rd.snapshot) this.o.snapshots.install(rd);
      else this.o.log.persist({ hardState: rd.hardState, entries: rd.entries, clusterId: rd.clusterId });
      this.settlePersisted();
      if (!this.o.unsafe?.sendBeforePersist) this.send(raft, rd, rd.messages);
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
    this.o.hooks.onAdvanced?.(raft, rd);
    return true;
  }

  private send(raft: Raft, rd: Ready, msgs: readonly Message[]): void {
    if (rd.clusterId !== undefined) this.o.transport.setClusterId(rd.clusterId);
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

  private settlePersisted(): void {
    if (this.persistWaiters.length === 0) return;
    const log = this.o.log;
    const last = log.lastIndex();
    const done = this.persistWaiters.filter((a) => a.index <= last);
    this.persistWaiters = this.persistWaiters.filter((a) => a.index > last);
    for (const a of done) {
      // Saved means saved with its own term: a newer leader's entry at that index is not it.
      if (a.index >= log.firstIndex() && log.term(a.index) === a.term) a.resolve();
      else a.reject(new ProposalLostError(a.index));
    }
  }
}

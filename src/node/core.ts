/**
 * The Raft core of a real node and the Ready loop (driver.ts) that drives it
 * over the SQLite store, the TLS peer transport, the state machine and the
 * checkpoint files, with the real clock (performance.now, setImmediate,
 * setTimeout). A core is made from what is durable: at start, when the
 * cluster is founded or this node waits to join, and again after a full disk
 * refused a Ready.
 */
import { randomUUID } from "node:crypto";
import type { DiskFullError } from "../platform/sqlite.ts";
import { Raft, SeededRng, type ConfState, type Entry, type Message, type ReadOnlyMode, type Ready } from "../raft/index.ts";
import type { Applier } from "../statemachine/fsm.ts";
import type { RaftStore } from "../storage/store.ts";
import { Driver } from "./driver.ts";
import type { ReadyHooks } from "./readyhooks.ts";
import type { NodeTiming } from "./timing.ts";

export interface NodeCoreOptions {
  readonly id: string;
  readonly store: RaftStore;
  readonly applier: Applier;
  readonly timing: Pick<NodeTiming, "electionTicks" | "heartbeatTicks">;
  readonly readOnly: ReadOnlyMode;
  /** NORMAL: every commit skips its fsync (CairnNodeOptions.synchronous). */
  readonly synchronous?: "FULL" | "NORMAL";
  /** The leader sends its appends before its own fsync, counting itself once durable (driver.ts parallelAppends). */
  readonly parallelAppends: boolean;
  /** Asynchronous log writes in flight at once (driver.ts writesInFlightMax). */
  readonly writesInFlightMax?: number;
  readonly transport: {
    send(m: Message): boolean;
    setClusterId(id: string): void;
  };
  readonly snapshots: { send(m: Message): void; install(rd: Ready): void };
  readonly hooks: Pick<ReadyHooks, "startReadRound" | "afterApply" | "afterReady">;
  onDiskFull(e: DiskFullError): void;
  onFatal(e: unknown): void;
  readonly readyRoundsPerTurn: number;
  readonly persistWaitersMax: number;
  /** The witness voters of the cluster file now (witness.ts), for a new core. */
  witnesses(): string[];
}

export class NodeCore {
  private current: Raft | undefined;
  readonly driver: Driver;

  constructor(private readonly o: NodeCoreOptions) {
    this.driver = new Driver({
      clock: { now: () => performance.now(), defer: (fn) => setImmediate(fn), after: (fn, ms) => void setTimeout(fn, ms) },
      log: o.store,
      transport: { send: (m) => o.transport.send(m), sendSnapshot: (m) => o.snapshots.send(m), setClusterId: (id) => o.transport.setClusterId(id) },
      fsm: { apply: (entries, conf) => this.applyDeferringSync(entries, conf) },
      snapshots: { install: (rd) => o.snapshots.install(rd) },
      hooks: {
        beforeReady: (raft) => o.hooks.startReadRound(raft),
        onApplied: (rd, results) => o.hooks.afterApply(rd, results),
        onAdvanced: (raft, rd) => o.hooks.afterReady(raft.view, rd),
        onDiskFull: (e) => o.onDiskFull(e),
        onFatal: (e) => o.onFatal(e),
      },
      readyRoundsPerTurn: o.readyRoundsPerTurn,
      persistWaitersMax: o.persistWaitersMax,
      parallelAppends: o.parallelAppends,
      writesInFlightMax: o.writesInFlightMax,
    });
  }

  /** The core now (none while an empty node decides whether to found). */
  get raft(): Raft | undefined {
    return this.current;
  }

  /** A new core from what is durable (clusterId null: not joined yet), driven from now on. */
  start(clusterId: string | null): Raft {
    const { o } = this;
    const seed = Number.parseInt(randomUUID().slice(0, 8), 16);
    const raft = new Raft({
      id: o.id,
      clusterId,
      storage: o.store,
      rng: new SeededRng(seed),
      applied: o.store.appliedIndex(),
      electionTicks: o.timing.electionTicks,
      heartbeatTicks: o.timing.heartbeatTicks,
      readOnly: o.readOnly,
      // Joiners are added as learners and promoted once caught up; an empty (wiped) voter must not vote.
      emptyNodeVotes: false,
      witnesses: o.witnesses(),
      asyncStorageWrites: o.parallelAppends,
    });
    this.current = raft;
    if (clusterId !== null) o.transport.setClusterId(clusterId);
    this.driver.attach(raft);
    return raft;
  }

  /**
   * The apply transaction skips its own fsync: the entries it applies are in
   * the fsynced log already, and the applied index lives in the same
   * transaction as their effects, so a crash that loses it only means the
   * entries are applied again at restart, exactly once. The next fsynced
   * commit (WAL is sequential) makes it durable anyway. One fsync per Ready.
   */
  private applyDeferringSync(entries: readonly Entry[], conf: ConfState | undefined): Map<number, unknown> {
    const { applier, store } = this.o;
    if (entries.length === 0 || this.o.synchronous === "NORMAL") return applier.apply(entries, conf);
    store.db.exec("PRAGMA synchronous=NORMAL");
    try {
      return applier.apply(entries, conf);
    } finally {
      store.db.exec("PRAGMA synchronous=FULL");
    }
  }
}

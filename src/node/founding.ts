/**
 * Founding, the runtime half (bootstrap.ts holds the pure rules): a node
 * with an empty data directory either founds the cluster, if it is the
 * designated founder and every other founder answered that it is empty, or
 * waits to be joined. The founder probes the other founders on a timer until
 * it decides; founding writes entry 1 (this node the sole voter) durably,
 * applies it, and starts the core on the new cluster id.
 */
import { randomUUID } from "node:crypto";
import type { ClusterConfig } from "../discovery/load.ts";
import { DiskFullError } from "../platform/sqlite.ts";
import { NONE, type ConfState, type Entry, type HardState } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";
import { decideFounding, designatedFounder, founders, foundingEntry, type ProbeAnswer } from "./bootstrap.ts";

/** Why a node without a cluster waits (logged once per new reason, shown in /status and /ready), "" once it is in one. */
export class Waiting {
  private current = "";

  constructor(private readonly log: Pick<Logger, "info">) {}

  get reason(): string {
    return this.current;
  }

  set(reason: string): void {
    if (reason !== this.current && reason !== "") this.log.info(reason);
    this.current = reason;
  }
}

export interface FoundingOptions {
  readonly id: string;
  readonly log: Logger;
  /** The log store: founding writes entry 1 and the new cluster id in one durable write. */
  readonly store: {
    readonly path: string;
    persist(w: { readonly entries: readonly Entry[]; readonly hardState: HardState; readonly clusterId: string }): void;
  };
  /** Applies entry 1 to the state machine. */
  apply(entries: readonly Entry[], conf: ConfState): void;
  /** The cluster file in force. */
  config(): ClusterConfig;
  /** Asks another founder whether it is empty. */
  probe(peer: string, timeoutMs: number): Promise<ProbeAnswer>;
  /** A core runs already, or the node stops: probing ends. */
  settled(): boolean;
  readonly waiting: Pick<Waiting, "set">;
  /** Starts the core without a cluster id: this node waits to be joined. */
  startJoining(): void;
  /** The cluster is founded with this id (entry 1 durable and applied): start the core and campaign. */
  onFounded(clusterId: string): void;
  /** Runs a timer's work; what it throws is fatal. */
  guarded(fn: () => void): void;
  readonly probeEveryMs: number;
}

export class Founding {
  private readonly answers = new Map<string, ProbeAnswer>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly o: FoundingOptions) {}

  /** An empty data directory: found the cluster, or wait to be joined. */
  start(): void {
    const o = this.o;
    if (designatedFounder(o.config()) !== o.id) {
      const d = decideFounding({ self: o.id, config: o.config(), answers: new Map() });
      if (d.kind !== "found") o.waiting.set(d.reason);
      o.startJoining();
      return;
    }
    this.timer = setInterval(() => o.guarded(() => this.probeRound()), o.probeEveryMs);
    this.probeRound();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private probeRound(): void {
    const o = this.o;
    if (o.settled()) return;
    for (const f of founders(o.config())) {
      if (f === o.id) continue;
      o.probe(f, o.probeEveryMs * 3)
        .then((v) => this.answers.set(f, v))
        .catch(() => this.answers.delete(f));
    }
    this.decide();
  }

  private decide(): void {
    const o = this.o;
    const d = decideFounding({ self: o.id, config: o.config(), answers: this.answers });
    if (d.kind === "wait") return o.waiting.set(d.reason);
    if (d.kind === "join") {
      this.stop();
      o.waiting.set(d.reason);
      o.startJoining();
      return;
    }
    const clusterId = randomUUID();
    const e1 = foundingEntry(o.id);
    try {
      o.store.persist({ entries: [e1], hardState: { term: 1, vote: NONE, commit: 1 }, clusterId });
    } catch (e) {
      // In a timer: a throw would end the process. The next probe round tries again.
      if (!(e instanceof DiskFullError)) throw e;
      return o.waiting.set(`cannot found the cluster: the disk holding ${o.store.path} is full`);
    }
    this.stop();
    try {
      o.apply([e1], { voters: [o.id], votersOutgoing: [], learners: [], learnersNext: [] });
    } catch (e) {
      // Entry 1 is durable and committed: the core hands it out again to be applied.
      if (!(e instanceof DiskFullError)) throw e;
    }
    o.log.info(`founded cluster "${o.config().cluster}" with id ${clusterId}; the other nodes join one by one`, { clusterId, term: 1, index: 1 });
    o.onFounded(clusterId);
  }
}

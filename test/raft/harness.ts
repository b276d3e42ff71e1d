/**
 * A small synchronous cluster for protocol unit tests (like etcd's raft
 * `network`): real cores over MemoryStorage, messages delivered in order until
 * quiet, with per-link drop rules.
 */
import {
  MESSAGE_DEFAULTS,
  MemoryStorage,
  Raft,
  SeededRng,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type RaftEvent,
  type ReadState,
} from "../../src/raft/index.ts";
import { applyConfChange } from "../../src/raft/confchange.ts";
import { TestRaft, type UnsafeBugs } from "../../src/raft/testing.ts";

export const CLUSTER = "test-cluster";

export interface NodeOpts extends Partial<Omit<RaftConfig, "id" | "storage" | "rng">> {
  /** Known protocol bugs switched on (TestRaft). */
  readonly unsafe?: UnsafeBugs;
}

export class TestNode {
  readonly storage: MemoryStorage;
  raft: Raft;
  readonly applied: Entry[] = [];
  readonly readStates: ReadState[] = [];
  /** Every event the core reported in a Ready. */
  readonly events: RaftEvent[] = [];
  private readonly seed: number;
  private readonly opts: NodeOpts;

  constructor(readonly id: NodeId, opts: { storage: MemoryStorage; seed: number; raft?: NodeOpts }) {
    this.storage = opts.storage;
    this.seed = opts.seed;
    this.opts = opts.raft ?? {};
    this.raft = new TestRaft({ id, clusterId: CLUSTER, storage: this.storage, rng: new SeededRng(opts.seed), ...opts.raft });
  }

  /**
   * A crash and restart: a new core over the same storage (everything a Ready
   * handed out was persisted), resuming after the last applied entry.
   */
  restart(raft: NodeOpts = {}): void {
    const last = this.applied[this.applied.length - 1];
    const applied = Math.max(last?.index ?? 0, this.storage.snapshotMeta().index, this.opts.applied ?? 0);
    const clusterId = this.raft.clusterId;
    this.raft = new TestRaft({
      id: this.id,
      storage: this.storage,
      rng: new SeededRng(this.seed + 7919),
      ...this.opts,
      clusterId,
      applied,
      ...raft,
    });
  }

  /** Persist, then hand back messages, then apply, then advance (the Ready contract). */
  processReady(): Message[] {
    if (!this.raft.hasReady()) return [];
    const rd = this.raft.ready();
    if (rd.snapshot) this.storage.applySnapshot(rd.snapshot);
    this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    if (rd.confState) this.storage.setConfState(rd.confState);
    this.applied.push(...rd.committedEntries);
    this.readStates.push(...rd.readStates);
    this.events.push(...rd.events);
    this.raft.advance(rd);
    return [...rd.messages];
  }

  /** Application entries applied so far (no-ops and conf changes left out), as strings. */
  appliedData(): string[] {
    return this.applied.filter((e) => e.kind === "normal" && e.data.byteLength > 0).map((e) => new TextDecoder().decode(e.data));
  }
}

/** Storage for a founding member: the initial configuration as entry 1, committed. */
export function bootstrapStorage(voters: NodeId[], learners: NodeId[] = []): MemoryStorage {
  const s = new MemoryStorage();
  const conf = {
    op: "init" as const,
    changes: [...voters.map((node) => ({ type: "addVoter" as const, node })), ...learners.map((node) => ({ type: "addLearner" as const, node }))],
  };
  s.append([{ index: 1, term: 1, kind: "conf", data: new Uint8Array(), conf }]);
  s.setHardState({ term: 1, vote: "", commit: 1 });
  const res = applyConfChange({ voters: [], votersOutgoing: [], learners: [], learnersNext: [] }, conf);
  if (!res.ok) throw new Error(res.reason);
  s.setConfState(res.conf);
  return s;
}

export type DropRule = (m: Message) => boolean;

export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  private drops: DropRule[] = [];
  /** Every message delivered, for assertions on what was sent. */
  readonly delivered: Message[] = [];
  /** Every message a drop rule swallowed, in order. */
  readonly dropped: Message[] = [];

  constructor(
    ids: NodeId[],
    opts: { raft?: NodeOpts; learners?: NodeId[]; seed?: number; nodeRaft?: Record<NodeId, NodeOpts> } = {},
  ) {
    let seed = opts.seed ?? 1;
    for (const id of [...ids, ...(opts.learners ?? [])]) {
      const storage = bootstrapStorage(ids, opts.learners);
      const raft = { applied: 1, ...opts.raft, ...opts.nodeRaft?.[id] };
      this.nodes.set(id, new TestNode(id, { storage, seed: seed++, raft }));
    }
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** Adds a node with empty storage (a joiner). */
  addEmpty(id: NodeId, raft: NodeOpts = {}): TestNode {
    const n = new TestNode(id, { storage: new MemoryStorage(), seed: 1000 + this.nodes.size, raft: { ...raft, clusterId: null } });
    this.nodes.set(id, n);
    return n;
  }

  /** Drops every message matching `rule` until heal(); returns a function that lifts just this rule. */
  drop(rule: DropRule): () => void {
    this.drops.push(rule);
    return () => {
      this.drops = this.drops.filter((d) => d !== rule);
    };
  }

  isolate(id: NodeId): () => void {
    return this.drop((m) => m.from === id || m.to === id);
  }

  cut(a: NodeId, b: NodeId): () => void {
    return this.drop((m) => (m.from === a && m.to === b) || (m.from === b && m.to === a));
  }

  heal(): void {
    this.drops = [];
  }

  /** Processes every node's Ready and delivers messages until nothing moves. */
  settle(limit = 10_000): void {
    for (let round = 0; round < limit; round++) {
      let moved = false;
      for (const n of this.nodes.values()) {
        for (const m of n.processReady()) {
          moved = true;
          if (this.drops.some((d) => d(m))) {
            this.dropped.push(m);
            continue;
          }
          const to = this.nodes.get(m.to);
          if (!to) continue;
          this.delivered.push(m);
          to.raft.step(m);
        }
      }
      if (!moved && ![...this.nodes.values()].some((n) => n.raft.hasReady())) return;
    }
    throw new Error(`network did not settle in ${limit} rounds`);
  }

  /** Steps one message into its target (bypassing drop rules) and settles. */
  deliver(m: Message): void {
    this.delivered.push(m);
    this.raft(m.to).step(m);
    this.settle();
  }

  /** Messages delivered so far that match `pred` (e.g. `(m) => m.type === "app"`). */
  sent(pred: (m: Message) => boolean): Message[] {
    return this.delivered.filter(pred);
  }

  /** Forgets what was delivered and dropped so far (to assert on what follows). */
  clearLog(): void {
    this.delivered.length = 0;
    this.dropped.length = 0;
  }

  /**
   * Takes a snapshot of `id`'s storage at its applied index and compacts the
   * log up to it (what the driver does after a checkpoint).
   */
  compact(id: NodeId): number {
    const n = this.node(id);
    const index = n.raft.status().applied;
    n.storage.createSnapshot(index, n.storage.initialState().confState);
    n.storage.compact(index);
    return index;
  }

  /** Ticks one node `n` times, settling after each tick. */
  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) {
      this.raft(id).tick();
      this.settle();
    }
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.raft.tick();
      this.settle();
    }
  }

  /** Ticks every node until some node leads (an election by timeout); returns its id. */
  tickUntilLeader(limit = 200): NodeId {
    for (let i = 0; i < limit; i++) {
      const l = this.leader();
      if (l !== undefined) return l;
      this.tickAll();
    }
    throw new Error(`no leader after ${limit} ticks`);
  }

  elect(id: NodeId): void {
    this.raft(id).campaign();
    this.settle();
  }

  leader(): NodeId | undefined {
    const leaders = [...this.nodes.values()].filter((n) => n.raft.role === "leader");
    return leaders.sort((a, b) => b.raft.term - a.raft.term)[0]?.id;
  }

  propose(id: NodeId, data: string): { index: number; term: number } {
    const at = this.raft(id).propose(new TextEncoder().encode(data));
    this.settle();
    return at;
  }
}

/** Application payloads of `e` as strings (empty entries are no-ops). */
export function text(e: Entry): string {
  return new TextDecoder().decode(e.data);
}

export function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** A message with every field defaulted, for stepping a core directly. */
export function msg(m: Partial<Message> & Pick<Message, "type" | "from" | "to" | "term">): Message {
  return { ...MESSAGE_DEFAULTS, cluster: CLUSTER, ...m };
}

/** The whole log of a node as "index/term" strings (entries after its snapshot). */
export function logOf(n: TestNode): string[] {
  const r = n.raft;
  const first = r.log.firstIndex();
  const last = r.log.lastIndex();
  return r.log.slice(first, last + 1, Number.MAX_SAFE_INTEGER).map((e) => `${e.index}/${e.term}`);
}

export function conf(voters: NodeId[], learners: NodeId[] = []): ConfState {
  return { voters: [...voters].sort(), votersOutgoing: [], learners: [...learners].sort(), learnersNext: [] };
}

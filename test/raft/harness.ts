/**
 * A small synchronous cluster for protocol unit tests (like etcd's raft
 * `network`): real cores over MemoryStorage, messages delivered in order until
 * quiet, with per-link drop rules.
 */
import {
  MemoryStorage,
  Raft,
  SeededRng,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type ReadState,
} from "../../src/raft/index.ts";
import { applyConfChange } from "../../src/raft/confchange.ts";

export const CLUSTER = "test-cluster";

export interface NodeOpts extends Partial<Omit<RaftConfig, "id" | "storage" | "rng">> {}

export class TestNode {
  readonly storage: MemoryStorage;
  raft: Raft;
  readonly applied: Entry[] = [];
  readonly readStates: ReadState[] = [];

  constructor(readonly id: NodeId, opts: { storage: MemoryStorage; seed: number; raft?: NodeOpts }) {
    this.storage = opts.storage;
    this.raft = new Raft({ id, clusterId: CLUSTER, storage: this.storage, rng: new SeededRng(opts.seed), ...opts.raft });
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

  constructor(ids: NodeId[], opts: { raft?: NodeOpts; learners?: NodeId[]; seed?: number } = {}) {
    let seed = opts.seed ?? 1;
    for (const id of [...ids, ...(opts.learners ?? [])]) {
      const storage = bootstrapStorage(ids, opts.learners);
      this.nodes.set(id, new TestNode(id, { storage, seed: seed++, raft: { applied: 1, ...opts.raft } }));
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

  drop(rule: DropRule): void {
    this.drops.push(rule);
  }

  isolate(id: NodeId): void {
    this.drop((m) => m.from === id || m.to === id);
  }

  cut(a: NodeId, b: NodeId): void {
    this.drop((m) => (m.from === a && m.to === b) || (m.from === b && m.to === a));
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
          if (this.drops.some((d) => d(m))) continue;
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

export function conf(voters: NodeId[], learners: NodeId[] = []): ConfState {
  return { voters: [...voters].sort(), votersOutgoing: [], learners: [...learners].sort(), learnersNext: [] };
}

/**
 * The Ready contract (DESIGN.md: persist, then send, then apply, then
 * advance) that makes the core's persistence guarantees hold (§5.1: term and
 * vote are stable before a reply; §5.3: entries are stable before they are
 * acknowledged), and the typed errors callers check with instanceof.
 */
import { describe, expect, test } from "bun:test";
import {
  CompactedError,
  MemoryStorage,
  NotLeaderError,
  ProposalDroppedError,
  UnavailableError,
  type Entry,
} from "../../src/raft/index.ts";
import { AssertionError } from "../../src/util/assert.ts";
import { Network, TestNode, bootstrapStorage, bytes, msg, text } from "./harness.ts";

function leaderNet(): Network {
  const net = new Network(["n1", "n2", "n3"]);
  net.elect("n1");
  return net;
}

describe("the Ready contract", () => {
  const calls: [string, (net: Network) => void][] = [
    ["step", (net) => net.raft("n1").step(msg({ type: "heartbeatResp", from: "n2", to: "n1", term: 2 }))],
    ["tick", (net) => net.raft("n1").tick()],
    ["propose", (net) => net.raft("n1").propose(bytes("x"))],
    ["proposeConfChange", (net) => net.raft("n1").proposeConfChange({ op: "enter", changes: [{ type: "addLearner", node: "n4" }] })],
    ["readIndex", (net) => net.raft("n1").readIndex("r")],
    ["transferLeadership", (net) => net.raft("n1").transferLeadership("n2")],
    ["campaign", (net) => net.raft("n2").campaign()],
    ["ready", (net) => net.raft("n1").ready()],
  ];
  for (const [name, call] of calls) {
    // Figure 2 (§5): persistent state is on stable storage before responding; the Ready contract enforces the order.
    test(`ready() then ${name}() before advance() fails an assertion`, () => {
      const net = leaderNet();
      const target = name === "campaign" ? "n2" : "n1";
      net.raft("n1").propose(bytes("pending"));
      const rd = net.raft(target).ready();
      expect(() => call(net)).toThrow(AssertionError);
      net.raft(target).advance(rd);
      expect(() => call(net)).not.toThrow();
    });
  }

  // Figure 2 (§5): advance() acknowledges a persisted Ready; one without a Ready is a driver bug.
  test("advance() without an outstanding ready() fails an assertion", () => {
    const net = leaderNet();
    const rd = net.raft("n1").ready();
    net.raft("n1").advance(rd);
    expect(() => net.raft("n1").advance(rd)).toThrow(AssertionError);
  });

  test("§5.3: a Ready hands out new entries to persist with the messages that announce them; committed entries come once", () => {
    const net = leaderNet();
    const r = net.raft("n1");
    expect(r.hasReady()).toBe(false);
    r.propose(bytes("x"));
    expect(r.hasReady()).toBe(true);
    const rd1 = r.ready();
    expect(rd1.entries.map(text)).toEqual(["x"]);
    expect(rd1.committedEntries).toEqual([]);
    expect(rd1.messages.filter((m) => m.type === "app").length).toBe(2);
    net.node("n1").storage.append(rd1.entries);
    r.advance(rd1);
    expect(r.log.unstableEntries()).toEqual([]);
    for (const m of rd1.messages) net.raft(m.to).step(m);
    for (const id of ["n2", "n3"]) for (const m of net.node(id).processReady()) r.step(m);
    const rd2 = r.ready();
    expect(rd2.entries).toEqual([]);
    expect(rd2.committedEntries.map(text)).toEqual(["x"]);
    expect(rd2.hardState?.commit).toBe(3);
    r.advance(rd2);
    const rd3 = r.ready();
    expect(rd3.committedEntries).toEqual([]);
    r.advance(rd3);
  });

  test("§5.1: a Ready reports role changes (softState) and term/vote changes (hardState) only when they change", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { preVote: false } });
    const r = net.raft("n1");
    r.campaign();
    const rd = r.ready();
    expect(rd.softState).toEqual({ leader: "", role: "candidate" });
    expect(rd.hardState).toEqual({ term: 2, vote: "n1", commit: 1 });
    r.advance(rd);
    r.tick();
    const rd2 = r.ready();
    expect(rd2.softState).toBeUndefined();
    expect(rd2.hardState).toBeUndefined();
    r.advance(rd2);
  });

  // Figure 2: entries are applied in log order; thesis §10.2.2: batches are bounded.
  test("committed entries in one Ready are capped at readyCommittedBytesMax; the rest come in the next", () => {
    const n = new TestNode("n2", { storage: bootstrapStorage(["n1", "n2", "n3"]), seed: 1, raft: { applied: 1, readyCommittedBytesMax: 300 } });
    const ents: Entry[] = [2, 3, 4, 5, 6].map((index) => ({ index, term: 2, kind: "normal", data: new Uint8Array(100) }));
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: ents, commit: 6 }));
    const batches: number[][] = [];
    while (n.raft.hasReady()) {
      const before = n.applied.length;
      n.processReady();
      if (n.applied.length > before) batches.push(n.applied.slice(before).map((e) => e.index));
    }
    // 124 bytes each as counted (100 + overhead): two fit in 300.
    expect(batches).toEqual([[2, 3], [4, 5], [6]]);
    expect(n.raft.status().applied).toBe(6);
  });
});

describe("typed errors", () => {
  // §8: clients are redirected to the leader (the error names it).
  test("propose on a follower throws NotLeaderError naming the leader", () => {
    const net = leaderNet();
    let err: unknown;
    try {
      net.raft("n2").propose(bytes("x"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NotLeaderError);
    expect((err as NotLeaderError).leader).toBe("n1");
  });

  // §8: with no leader known the client retries later.
  test("propose with no leader known throws NotLeaderError with an empty leader", () => {
    const net = new Network(["n1", "n2", "n3"]);
    let err: unknown;
    try {
      net.raft("n1").propose(bytes("x"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NotLeaderError);
    expect((err as NotLeaderError).leader).toBe("");
  });

  // thesis §3.10: proposals are refused during a transfer; the reason says why.
  test("ProposalDroppedError carries its reason", () => {
    const net = leaderNet();
    net.isolate("n3");
    net.raft("n1").transferLeadership("n3");
    let err: unknown;
    try {
      net.raft("n1").propose(bytes("x"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProposalDroppedError);
    expect((err as ProposalDroppedError).reason).toContain("n3");
  });

  test("§7: reading compacted entries throws CompactedError, reading past the end UnavailableError", () => {
    const s = new MemoryStorage();
    const ents: Entry[] = [1, 2, 3, 4, 5].map((index) => ({ index, term: 1, kind: "normal", data: new Uint8Array() }));
    s.append(ents);
    s.createSnapshot(3, { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] });
    s.compact(3);
    expect(s.term(3)).toBe(1); // the snapshot's own index still answers
    const compacted = (() => {
      try {
        s.term(2);
      } catch (e) {
        return e;
      }
    })();
    expect(compacted).toBeInstanceOf(CompactedError);
    expect((compacted as CompactedError).firstIndex).toBe(4);
    expect(() => s.entries(3, 5, 1 << 20)).toThrow(CompactedError);
    expect(() => s.entries(4, 7, 1 << 20)).toThrow(UnavailableError);
    expect(() => s.term(6)).toThrow(UnavailableError);
    expect(s.entries(4, 6, 1 << 20).map((e) => e.index)).toEqual([4, 5]);
  });

  test("§7: the core's log reports compaction with CompactedError too", () => {
    const net = leaderNet();
    for (let i = 0; i < 3; i++) net.propose("n1", `v${i}`);
    net.compact("n1");
    const log = net.raft("n1").log;
    expect(() => log.term(log.firstIndex() - 2)).toThrow(CompactedError);
    expect(() => log.slice(1, 3, 1 << 20)).toThrow(CompactedError);
    expect(log.termOr0(1)).toBe(0);
  });
});

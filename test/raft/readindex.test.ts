/**
 * Linearizable reads by read index (thesis §6.4) and the lease variant
 * (thesis §6.4.1): when a read may be answered, at which index, and when not.
 */
import { describe, expect, test } from "bun:test";
import { NotLeaderError, type Ready } from "../../src/raft/index.ts";
import { Network, TestNode, bootstrapStorage, msg } from "./harness.ts";

/** One Ready of `id`, processed like the driver would, returned for inspection. */
function readyOf(net: Network, id: string): Ready {
  const n = net.node(id);
  const rd = n.raft.ready();
  n.storage.append(rd.entries);
  if (rd.hardState) n.storage.setHardState(rd.hardState);
  n.applied.push(...rd.committedEntries);
  n.readStates.push(...rd.readStates);
  n.raft.advance(rd);
  return rd;
}

describe("read index (thesis §6.4)", () => {
  test("thesis §6.4: the leader answers only after a heartbeat quorum, at the commit index the read arrived at", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.propose("n1", "x");
    const commitAtRead = net.raft("n1").log.committed;
    const stopAcks = net.drop((m) => m.type === "heartbeatResp");

    net.raft("n1").readIndex("r1");
    const rd = readyOf(net, "n1");
    expect(rd.readStates).toEqual([]);
    const hbs = rd.messages.filter((m) => m.type === "heartbeat");
    expect(hbs.map((m) => [m.to, m.context])).toEqual([
      ["n2", "r1"],
      ["n3", "r1"],
    ]);
    for (const m of rd.messages) net.raft(m.to).step(m);
    net.settle();
    expect(net.node("n1").readStates).toEqual([]); // no quorum of acks yet

    net.propose("n1", "y"); // the commit index moves on meanwhile
    expect(net.raft("n1").log.committed).toBe(commitAtRead + 1);
    stopAcks();
    net.tick("n1"); // the next heartbeat carries r1 again; a quorum acks
    expect(net.node("n1").readStates).toEqual([{ index: commitAtRead, ctx: "r1" }]);
  });

  test("thesis §6.4: one heartbeat quorum answers every read that arrived before it", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const stopAcks = net.drop((m) => m.type === "heartbeatResp");
    net.raft("n1").readIndex("a");
    net.settle();
    net.raft("n1").readIndex("b");
    net.settle();
    stopAcks();
    net.raft("n1").readIndex("c");
    net.settle();
    expect(net.node("n1").readStates.map((r) => r.ctx)).toEqual(["a", "b", "c"]);
  });

  test("thesis §6.4: a leader that cannot reach a quorum never answers a read", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.isolate("n1");
    net.raft("n1").readIndex("lost");
    net.tick("n1", 30); // it steps down meanwhile (CheckQuorum)
    expect(net.raft("n1").role).toBe("follower");
    expect(net.node("n1").readStates).toEqual([]);
  });

  test("thesis §6.4: a follower's read is forwarded to the leader and answered to the follower", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.propose("n1", "x");
    net.clearLog();
    net.raft("n2").readIndex("f1");
    net.settle();
    expect(net.sent((m) => m.type === "readIndex").map((m) => [m.from, m.to, m.context])).toEqual([["n2", "n1", "f1"]]);
    expect(net.sent((m) => m.type === "heartbeat" && m.context === "f1").length).toBe(2);
    expect(net.sent((m) => m.type === "readIndexResp").map((m) => [m.to, m.index, m.context])).toEqual([["n2", 3, "f1"]]);
    expect(net.node("n2").readStates).toEqual([{ index: 3, ctx: "f1" }]);
    expect(net.node("n1").readStates).toEqual([]);
  });

  test("thesis §6.4: a node that knows no leader refuses a read with NotLeaderError", () => {
    const net = new Network(["n1", "n2", "n3"]);
    expect(() => net.raft("n2").readIndex("r")).toThrow(NotLeaderError);
  });

  test("thesis §6.4: a new leader holds reads until it has committed an entry of its own term", () => {
    const net = new Network(["n1", "n2", "n3"]);
    const noCommit = net.drop((m) => m.type === "appResp");
    net.elect("n1");
    expect(net.raft("n1").role).toBe("leader");
    expect(net.raft("n1").log.committed).toBe(1); // the term-2 no-op is not committed yet
    net.clearLog();
    net.raft("n1").readIndex("early");
    net.settle();
    // Not answered, and not even a heartbeat round yet: the commit index is not known.
    expect(net.node("n1").readStates).toEqual([]);
    expect(net.sent((m) => m.context === "early")).toEqual([]);
    noCommit();
    net.tick("n1"); // appends get through, the no-op commits, then the read's heartbeat round
    expect(net.raft("n1").log.committed).toBe(2);
    expect(net.node("n1").readStates).toEqual([{ index: 2, ctx: "early" }]);
  });

  test("thesis §6.4: a single-voter cluster answers at once", () => {
    const n = new TestNode("n1", { storage: bootstrapStorage(["n1"]), seed: 1, raft: { applied: 1 } });
    n.raft.campaign();
    n.processReady();
    expect(n.raft.role).toBe("leader");
    n.raft.readIndex("solo");
    n.processReady();
    expect(n.readStates).toEqual([{ index: 2, ctx: "solo" }]);
  });
});

describe("lease reads (thesis §6.4.1)", () => {
  // In lease mode every node starts as if it had granted a lease just before
  // it (re)started, so the first leader is elected by timeout.
  function leaseCluster(raft: { leaseDriftTicks?: number } = {}): { net: Network; l: string; f: string[] } {
    const net = new Network(["n1", "n2", "n3"], { raft: { readOnly: "lease", ...raft } });
    const l = net.tickUntilLeader();
    return { net, l, f: ["n1", "n2", "n3"].filter((id) => id !== l) };
  }

  test("thesis §6.4.1: while the lease holds the leader answers in the next Ready without a heartbeat round", () => {
    const { net, l } = leaseCluster();
    net.tickAll(); // one acknowledged heartbeat round (re)starts the lease
    net.raft(l).readIndex("fast");
    const rd = readyOf(net, l);
    expect(rd.readStates).toEqual([{ index: net.raft(l).log.committed, ctx: "fast" }]);
    expect(rd.messages).toEqual([]);
  });

  test("thesis §6.4.1: a new leader with no acknowledged heartbeat yet falls back to a heartbeat round", () => {
    const { net, l } = leaseCluster();
    expect(net.raft(l).leaseValid()).toBe(false); // elected by votes; no heartbeat answered yet
    net.raft(l).readIndex("r");
    const rd = readyOf(net, l);
    expect(rd.readStates).toEqual([]);
    expect(rd.messages.filter((m) => m.type === "heartbeat" && m.context === "r").length).toBe(2);
  });

  test("thesis §6.4.1: an expired lease falls back to a heartbeat round, answered once a quorum acks", () => {
    // Lease window: electionTicks - leaseDriftTicks = 10 - 5 = 5 ticks after the acked heartbeat was sent.
    const { net, l } = leaseCluster({ leaseDriftTicks: 5 });
    net.tickAll();
    expect(net.raft(l).leaseValid()).toBe(true);
    const stopAcks = net.drop((m) => m.type === "heartbeatResp");
    net.tick(l, 5);
    expect(net.raft(l).role).toBe("leader");
    expect(net.raft(l).leaseValid()).toBe(false);
    net.raft(l).readIndex("late");
    const rd = readyOf(net, l);
    expect(rd.readStates).toEqual([]);
    expect(rd.messages.filter((m) => m.type === "heartbeat" && m.context === "late").length).toBe(2);
    for (const m of rd.messages) net.raft(m.to).step(m);
    net.settle();
    expect(net.node(l).readStates).toEqual([]);
    stopAcks();
    net.tick(l);
    expect(net.node(l).readStates).toEqual([{ index: net.raft(l).log.committed, ctx: "late" }]);
    expect(net.raft(l).leaseValid()).toBe(true);
  });

  test("thesis §6.4.1 + §3.10: after a TimeoutNow was sent, no lease reads for the rest of that term", () => {
    const { net, l, f } = leaseCluster();
    const term = net.raft(l).term;
    net.tickAll();
    net.raft(l).readIndex("before");
    expect(readyOf(net, l).readStates.map((r) => r.ctx)).toEqual(["before"]);

    net.drop((m) => m.type === "timeoutNow");
    net.raft(l).transferLeadership(f[0]!);
    net.settle();
    expect(net.dropped.map((m) => [m.type, m.to])).toEqual([["timeoutNow", f[0]!]]);
    net.tickAll(12); // the transfer is abandoned after an election timeout
    expect(net.raft(l).role).toBe("leader");
    expect(net.raft(l).term).toBe(term);
    expect(net.raft(l).status().leadTransferee).toBe("");
    expect(net.raft(l).leaseValid()).toBe(false);

    net.raft(l).readIndex("after");
    const rd = readyOf(net, l);
    expect(rd.readStates).toEqual([]);
    expect(rd.messages.filter((m) => m.type === "heartbeat" && m.context === "after").length).toBe(2);
    for (const m of rd.messages) net.raft(m.to).step(m);
    net.settle();
    expect(net.node(l).readStates.map((r) => r.ctx)).toEqual(["before", "after"]);
  });

  test("thesis §6.4.1: a restarted node honours a lease it may have granted: no vote for an election timeout", () => {
    const { net, l, f } = leaseCluster();
    net.tickAll();
    const [a, b] = [f[0]!, f[1]!];
    const term = net.raft(a).term;
    const last = net.raft(a).log.lastIndex();
    net.node(a).restart();
    const vote = msg({ type: "vote", from: b, to: a, term: term + 3, index: last, logTerm: term });
    net.raft(a).step(vote);
    expect(net.raft(a).term).toBe(term);
    expect(net.node(a).processReady()).toEqual([]);
    for (let i = 0; i < 10; i++) net.raft(a).tick();
    net.node(a).processReady();
    net.raft(a).step(vote);
    expect(net.raft(a).term).toBe(term + 3);
    expect(net.raft(a).vote).toBe(b);
    expect(l).not.toBe(a);
  });
});

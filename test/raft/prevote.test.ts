/**
 * PreVote (thesis §9.6): a node first asks whether it could win before it
 * raises its term, so a node coming back from a partition does not disrupt a
 * working leader.
 */
import { describe, expect, test } from "bun:test";
import { Network, msg } from "./harness.ts";

describe("PreVote (thesis §9.6)", () => {
  test("thesis §9.6: a partitioned node keeps its term; when it returns the leader keeps leading", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const back = net.isolate("n3");
    net.tickAll(60); // n3 times out several times meanwhile
    expect(net.raft("n3").term).toBe(2);
    expect(net.raft("n3").role).toBe("preCandidate");
    expect(net.dropped.some((m) => m.from === "n3" && m.type === "preVote" && m.term === 3)).toBe(true);
    expect(net.dropped.some((m) => m.from === "n3" && m.type === "vote")).toBe(false);

    back();
    net.clearLog();
    net.tickAll(30);
    expect(net.raft("n1").role).toBe("leader");
    for (const n of net.nodes.values()) {
      expect(n.raft.term).toBe(2);
      expect(n.raft.lead).toBe("n1");
    }
    expect(net.sent((m) => m.term > 2)).toEqual([]);
    net.propose("n1", "after");
    expect(net.node("n3").appliedData()).toEqual(["after"]);
  });

  test("thesis §9.6 (contrast): without PreVote the returning node's higher term deposes the leader", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { preVote: false, checkQuorum: false } });
    net.elect("n1");
    const back = net.isolate("n3");
    net.tick("n3", 60);
    const n3Term = net.raft("n3").term;
    expect(n3Term).toBeGreaterThan(3);
    back();
    net.tick("n3", 30); // its next election reaches the others
    expect(net.raft("n1").term).toBeGreaterThanOrEqual(n3Term);
    expect(net.raft("n1").term === 2 && net.raft("n1").role === "leader").toBe(false);
  });

  test("thesis §9.6: granting a pre-vote changes neither the voter's term nor its vote", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    const n2 = net.node("n2");
    const before = n2.raft.hardState();
    n2.raft.step(msg({ type: "preVote", from: "n3", to: "n2", term: 5, index: 2, logTerm: 2 }));
    const rd = n2.raft.ready();
    expect(rd.hardState).toBeUndefined();
    expect(rd.messages.map((m) => [m.type, m.term, m.reject])).toEqual([["preVoteResp", 5, false]]);
    n2.raft.advance(rd);
    expect(n2.raft.hardState()).toEqual(before);
    expect(n2.raft.lead).toBe("n1");
  });

  test("thesis §9.6 + §5.4.1: a pre-candidate with a stale log is refused and keeps its term", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    const back = net.isolate("n3");
    net.propose("n1", "x");
    back();
    net.clearLog();
    net.elect("n3");
    expect(net.sent((m) => m.type === "preVoteResp" && m.to === "n3").map((m) => m.reject)).toEqual([true, true]);
    expect(net.sent((m) => m.type === "vote")).toEqual([]);
    expect(net.raft("n3").role).toBe("follower");
    expect(net.raft("n3").term).toBe(2);
    expect(net.raft("n1").role).toBe("leader");
  });

  test("thesis §9.6: a pre-candidate that wins the pre-vote runs the real election in term+1", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n2");
    const types = net.delivered.filter((m) => m.from === "n2" && m.to === "n1").map((m) => [m.type, m.term]);
    expect(types.slice(0, 2)).toEqual([
      ["preVote", 2],
      ["vote", 2],
    ]);
    expect(net.raft("n2").role).toBe("leader");
    expect(net.raft("n2").term).toBe(2);
  });
});

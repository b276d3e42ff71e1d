/**
 * CheckQuorum: a leader steps down when it has not heard from a quorum for an
 * election timeout (thesis §6.2), and followers that heard from a leader
 * within the election timeout ignore vote requests (thesis §4.2.3).
 */
import { describe, expect, test } from "bun:test";
import { NotLeaderError, type RaftEvent } from "../../src/raft/index.ts";
import { Network, bytes, msg } from "./harness.ts";

describe("CheckQuorum (thesis §6.2, §4.2.3)", () => {
  test("thesis §6.2: a leader cut off from the majority steps down after an election timeout", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.isolate("n1");
    const events: RaftEvent[] = [];
    let ticks = 0;
    while (net.raft("n1").role === "leader" && ticks < 100) {
      net.raft("n1").tick();
      ticks++;
      const rd = net.raft("n1").ready();
      events.push(...rd.events);
      net.raft("n1").advance(rd);
    }
    expect(net.raft("n1").role).toBe("follower");
    // Active answers from the election count for the first window; the second has none.
    expect(ticks).toBeGreaterThan(10);
    expect(ticks).toBeLessThanOrEqual(20);
    expect(events).toContainEqual(expect.objectContaining({ kind: "stepDown" }));
    expect(net.raft("n1").term).toBe(2);
    expect(net.raft("n1").lead).toBe("");
    expect(() => net.raft("n1").propose(bytes("x"))).toThrow(NotLeaderError);
  });

  test("thesis §6.2: a leader that hears from a majority keeps leading across many election timeouts", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.isolate("n3");
    net.tickAll(100);
    expect(net.raft("n1").role).toBe("leader");
    expect(net.raft("n1").term).toBe(2);
  });

  test("thesis §6.2: without checkQuorum an isolated leader never steps down by itself", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    net.isolate("n1");
    net.tick("n1", 100);
    expect(net.raft("n1").role).toBe("leader");
  });

  test("thesis §4.2.3: a follower that heard from the leader within the election timeout ignores a vote request", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { preVote: false } });
    net.elect("n1");
    const n2 = net.raft("n2");
    n2.step(msg({ type: "vote", from: "n3", to: "n2", term: 9, index: 2, logTerm: 2 }));
    expect(n2.term).toBe(2);
    expect(n2.vote).toBe("n1");
    expect(net.node("n2").processReady()).toEqual([]);
    // The leader ignores it too.
    net.raft("n1").step(msg({ type: "vote", from: "n3", to: "n1", term: 9, index: 2, logTerm: 2 }));
    expect(net.raft("n1").role).toBe("leader");
    expect(net.raft("n1").term).toBe(2);
  });

  test("thesis §4.2.3: once a follower has not heard from a leader for an election timeout it votes again", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { preVote: false } });
    net.elect("n1");
    net.isolate("n1");
    const n2 = net.raft("n2");
    for (let i = 0; i < 10; i++) n2.tick();
    net.node("n2").processReady();
    n2.step(msg({ type: "vote", from: "n3", to: "n2", term: 9, index: 2, logTerm: 2 }));
    expect(n2.term).toBe(9);
    expect(n2.vote).toBe("n3");
    expect(net.node("n2").processReady().map((m) => [m.type, m.reject])).toEqual([["voteResp", false]]);
  });

  test("thesis §4.2.3: a pre-vote request inside the lease gets no answer", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.raft("n2").step(msg({ type: "preVote", from: "n3", to: "n2", term: 3, index: 2, logTerm: 2 }));
    expect(net.node("n2").processReady()).toEqual([]);
  });
});

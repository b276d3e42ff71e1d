/**
 * Leadership transfer (thesis §3.10): the leader catches the target up, sends
 * it TimeoutNow, and refuses proposals meanwhile; an unfinished transfer is
 * abandoned after an election timeout.
 */
import { describe, expect, test } from "bun:test";
import { CAMPAIGN_TRANSFER, ConfChangeError, NotLeaderError, ProposalDroppedError, type RaftEvent } from "../../src/raft/index.ts";
import { Network, bytes, msg } from "./harness.ts";

function events(net: Network, id: string): RaftEvent[] {
  const rd = net.raft(id).ready();
  net.raft(id).advance(rd);
  return [...rd.events];
}

describe("leadership transfer (thesis §3.10)", () => {
  test("thesis §3.10: to an up-to-date follower TimeoutNow goes out at once and the target wins term+1", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.propose("n1", "x");
    net.raft("n1").transferLeadership("n2");
    const rd = net.raft("n1").ready();
    expect(rd.messages.map((m) => [m.type, m.to])).toEqual([["timeoutNow", "n2"]]);
    net.raft("n1").advance(rd);
    net.clearLog();
    net.deliver(rd.messages[0]!);
    // The forced election skips PreVote and is not blocked by the followers' leases (thesis §4.2.3).
    expect(net.sent((m) => m.type === "preVote")).toEqual([]);
    const votes = net.sent((m) => m.type === "vote");
    expect(votes.length).toBe(2);
    for (const v of votes) expect(v.context).toBe(CAMPAIGN_TRANSFER);
    expect(net.raft("n2").role).toBe("leader");
    expect(net.raft("n2").term).toBe(3);
    expect(net.raft("n1").role).toBe("follower");
    expect(net.raft("n1").lead).toBe("n2");
    net.propose("n2", "y");
    for (const n of net.nodes.values()) expect(n.appliedData()).toEqual(["x", "y"]);
  });

  test("thesis §3.10: a lagging target is caught up first, then sent TimeoutNow", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const lag = net.drop((m) => m.type === "app" && m.to === "n3");
    for (const d of ["a", "b", "c"]) net.propose("n1", d);
    lag();
    expect(net.raft("n3").log.lastIndex()).toBe(2);
    const last = net.raft("n1").log.lastIndex();
    net.clearLog();
    net.raft("n1").transferLeadership("n3");
    const first = net.raft("n1").ready();
    expect(first.messages.some((m) => m.type === "timeoutNow")).toBe(false);
    expect(first.messages.some((m) => m.type === "app" && m.to === "n3")).toBe(true);
    net.raft("n1").advance(first);
    for (const m of first.messages) net.deliver(m);

    const seq = net.delivered.map((m) => `${m.type}:${m.from}->${m.to}:${m.index}`);
    const timeoutAt = seq.indexOf("timeoutNow:n1->n3:0");
    const caughtUpAt = seq.indexOf(`appResp:n3->n1:${last}`);
    expect(caughtUpAt).toBeGreaterThanOrEqual(0);
    expect(timeoutAt).toBeGreaterThan(caughtUpAt);
    expect(net.sent((m) => m.type === "timeoutNow").length).toBe(1);
    expect(net.raft("n3").role).toBe("leader");
    expect(net.node("n3").appliedData()).toEqual(["a", "b", "c"]);
  });

  test("thesis §3.10: proposals and conf changes are refused with ProposalDroppedError while a transfer is under way", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.isolate("n3");
    net.propose("n1", "x"); // n3 lags and cannot be reached
    net.raft("n1").transferLeadership("n3");
    net.settle();
    expect(net.raft("n1").status().leadTransferee).toBe("n3");
    expect(() => net.raft("n1").propose(bytes("y"))).toThrow(ProposalDroppedError);
    expect(() => net.raft("n1").proposeBatch([bytes("y")])).toThrow(ProposalDroppedError);
    const err = (() => {
      try {
        net.raft("n1").proposeConfChange({ op: "enter", changes: [{ type: "remove", node: "n3" }] });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ProposalDroppedError);
    expect(err).not.toBeInstanceOf(ConfChangeError);
  });

  test("thesis §3.10: a transfer that does not finish within an election timeout is abandoned and proposals resume", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.isolate("n3");
    net.raft("n1").transferLeadership("n3");
    net.settle();
    net.tickAll(9);
    expect(net.raft("n1").status().leadTransferee).toBe("n3");
    expect(() => net.raft("n1").propose(bytes("y"))).toThrow(ProposalDroppedError);
    net.tickAll(1);
    expect(net.raft("n1").status().leadTransferee).toBe("");
    expect(net.raft("n1").role).toBe("leader");
    expect(net.raft("n1").term).toBe(2);
    net.propose("n1", "y");
    expect(net.node("n2").appliedData()).toEqual(["y"]);
  });

  test("thesis §3.10: a transfer asked of a follower is forwarded to the leader", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.clearLog();
    net.raft("n3").transferLeadership("n3");
    net.settle();
    expect(net.sent((m) => m.type === "transferLeader").map((m) => [m.from, m.to, m.context])).toEqual([["n3", "n1", "n3"]]);
    expect(net.raft("n3").role).toBe("leader");
  });

  test("thesis §3.10: a node that knows no leader refuses a transfer with NotLeaderError", () => {
    const net = new Network(["n1", "n2", "n3"]);
    expect(() => net.raft("n2").transferLeadership("n3")).toThrow(NotLeaderError);
  });

  test("thesis §3.10: a transfer to a learner or a non-member is refused and reported; to itself is a no-op", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"] });
    net.elect("n1");
    net.raft("n1").transferLeadership("n4");
    net.raft("n1").transferLeadership("n9");
    const ev = events(net, "n1");
    expect(ev.filter((e) => e.kind === "dropped").map((e) => (e as { what: string }).what)).toEqual(["transfer to n4", "transfer to n9"]);
    net.raft("n1").transferLeadership("n1");
    expect(net.raft("n1").status().leadTransferee).toBe("");
    expect(net.raft("n1").hasReady()).toBe(false);
    net.propose("n1", "still leading");
    expect(net.node("n4").appliedData()).toEqual(["still leading"]);
  });

  test("thesis §3.10: TimeoutNow reaching a learner does not make it campaign", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"] });
    net.elect("n1");
    net.clearLog();
    net.deliver(msg({ type: "timeoutNow", from: "n1", to: "n4", term: 2 }));
    expect(net.sent((m) => m.from === "n4" && (m.type === "vote" || m.type === "preVote"))).toEqual([]);
    expect(net.raft("n4").role).toBe("follower");
    expect(net.raft("n4").term).toBe(2);
    expect(net.raft("n1").role).toBe("leader");
  });
});

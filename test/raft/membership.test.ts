/**
 * Membership: learners (non-voting members, thesis §4.2.1) and configuration
 * changes by joint consensus (§6, thesis §4.3), including removing the leader
 * (thesis §4.2.2) and removed servers (thesis §4.2.3).
 */
import { describe, expect, test } from "bun:test";
import {
  ConfChangeError,
  NotLeaderError,
  type ConfChangeSingle,
  type ConfState,
  type Entry,
  type NodeId,
} from "../../src/raft/index.ts";
import { Network, bytes, conf, msg } from "./harness.ts";

function confEntries(net: Network, id: NodeId): Entry[] {
  const r = net.raft(id);
  return r.log.slice(r.log.firstIndex(), r.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER).filter((e) => e.kind === "conf");
}

function change(net: Network, leader: NodeId, changes: ConfChangeSingle[]): number {
  const at = net.raft(leader).proposeConfChange({ op: "enter", changes });
  net.settle();
  return at.index;
}

function confOf(net: Network, id: NodeId): ConfState {
  return net.raft(id).status().conf;
}

function joint(voters: NodeId[], outgoing: NodeId[], learners: NodeId[] = [], learnersNext: NodeId[] = []): ConfState {
  return { voters, votersOutgoing: outgoing, learners, learnersNext };
}

describe("learners (thesis §4.2.1)", () => {
  test("thesis §4.2.1: a learner receives and applies the log", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"] });
    net.elect("n1");
    net.propose("n1", "x");
    expect(net.node("n4").appliedData()).toEqual(["x"]);
    expect(net.raft("n1").status().progress.get("n4")!.isLearner).toBe(true);
  });

  test("thesis §4.2.1: a learner is never asked to vote, and a vote from it does not count", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"], raft: { preVote: false } });
    net.isolate("n2");
    net.isolate("n3");
    net.elect("n1");
    expect(net.delivered.filter((m) => m.to === "n4" && (m.type === "vote" || m.type === "preVote"))).toEqual([]);
    expect(net.raft("n1").role).toBe("candidate");
    net.raft("n1").step(msg({ type: "voteResp", from: "n4", to: "n1", term: 2 }));
    expect(net.raft("n1").role).toBe("candidate");
  });

  test("thesis §4.2.1: a learner never campaigns, however long it hears nothing", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"] });
    net.elect("n1");
    net.isolate("n4");
    net.clearLog();
    net.tick("n4", 200);
    expect(net.raft("n4").role).toBe("follower");
    expect(net.raft("n4").term).toBe(2);
    expect(net.dropped.filter((m) => m.from === "n4")).toEqual([]);
  });

  test("thesis §4.2.1: a learner's copy does not count towards commit", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4", "n5"] });
    net.elect("n1");
    const back2 = net.isolate("n2");
    const back3 = net.isolate("n3");
    const at = net.propose("n1", "x");
    expect(net.raft("n4").log.lastIndex()).toBe(at.index);
    expect(net.raft("n5").log.lastIndex()).toBe(at.index);
    expect(net.raft("n1").log.committed).toBe(at.index - 1);
    back2();
    back3();
    net.tick("n1");
    expect(net.raft("n1").log.committed).toBe(at.index);
  });
});

describe("joint consensus (§6, thesis §4.3)", () => {
  test("thesis §4.3: adding a voter goes through a joint configuration that the leader then leaves by itself", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.addEmpty("n4");
    const enterAt = change(net, "n1", [{ type: "addVoter", node: "n4" }]);
    const ces = confEntries(net, "n1");
    expect(ces.map((e) => [e.index, e.conf!.op])).toEqual([
      [1, "init"],
      [enterAt, "enter"],
      [enterAt + 1, "leave"],
    ]);
    const joined = conf(["n1", "n2", "n3", "n4"]);
    for (const n of net.nodes.values()) expect(confOf(net, n.id)).toEqual(joined);
    const applied = net.node("n2").events.filter((e) => e.kind === "confApplied").map((e) => (e as { conf: ConfState }).conf);
    expect(applied).toEqual([joint(["n1", "n2", "n3", "n4"], ["n1", "n2", "n3"]), joined]);
    // The new voter holds the log and now counts: with n2 and n3 away, two of four do not commit.
    expect(net.raft("n4").log.lastIndex()).toBe(net.raft("n1").log.lastIndex());
    net.isolate("n2");
    net.isolate("n3");
    const at = net.propose("n1", "x");
    expect(net.raft("n4").log.lastIndex()).toBe(at.index);
    expect(net.raft("n1").log.committed).toBe(at.index - 1);
  });

  test("thesis §4.3: a joiner that replays configurations from before it was added is not reported as removed", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.addEmpty("n4");
    change(net, "n1", [{ type: "addVoter", node: "n4" }]);
    expect(net.node("n4").events.filter((e) => e.kind === "removed")).toEqual([]);
    expect(net.node("n4").events.filter((e) => e.kind === "confApplied").length).toBe(3);
  });

  test("§6: removing a voter: the rest commit without it, and it is told it was removed", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    change(net, "n1", [{ type: "remove", node: "n3" }]);
    expect(confOf(net, "n1")).toEqual(conf(["n1", "n2"]));
    expect(confOf(net, "n2")).toEqual(conf(["n1", "n2"]));
    expect([...net.raft("n1").status().progress.keys()].sort()).toEqual(["n1", "n2"]);
    // n3 learned the commit of the leave entry with the append that announced it.
    expect(net.node("n3").events.filter((e) => e.kind === "removed").length).toBe(1);
    net.isolate("n3");
    const at = net.propose("n1", "x");
    expect(net.raft("n1").log.committed).toBe(at.index);
    // Two voters now: without n2 nothing commits.
    net.heal();
    net.isolate("n2");
    const at2 = net.propose("n1", "y");
    expect(net.raft("n1").log.committed).toBe(at2.index - 1);
  });

  test("thesis §4.2.3: a removed voter that keeps campaigning does not disrupt the cluster", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    change(net, "n1", [{ type: "remove", node: "n3" }]);
    net.tickAll(100);
    expect(net.raft("n1").role).toBe("leader");
    expect(net.raft("n1").term).toBe(2);
    expect(net.raft("n2").term).toBe(2);
  });

  test("§6: replacing a voter (add n4, remove n3) in one joint change", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.addEmpty("n4");
    change(net, "n1", [
      { type: "addVoter", node: "n4" },
      { type: "remove", node: "n3" },
    ]);
    const want = conf(["n1", "n2", "n4"]);
    for (const id of ["n1", "n2", "n4"]) expect(confOf(net, id)).toEqual(want);
    net.isolate("n3");
    net.isolate("n2");
    const at = net.propose("n1", "x"); // n1 + n4 are a majority of {n1, n2, n4}
    expect(net.raft("n1").log.committed).toBe(at.index);
    expect(net.node("n4").appliedData()).toEqual(["x"]);
  });

  test("thesis §4.2.2: a removed leader leads through the joint configuration and steps down once the configuration without it is committed", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    change(net, "n1", [{ type: "remove", node: "n1" }]);
    const ev = net.node("n1").events.map((e) => e.kind).filter((k) => k !== "dropped");
    expect(ev).toEqual(["confApplied", "confApplied", "removed", "stepDown"]);
    const leaveAt = confEntries(net, "n1").at(-1)!;
    expect(leaveAt.conf!.op).toBe("leave");
    expect(net.raft("n1").log.committed).toBeGreaterThanOrEqual(leaveAt.index);
    expect(net.raft("n1").role).toBe("follower");
    // The followers learned the commit of the leave entry before n1 stopped.
    expect(confOf(net, "n2")).toEqual(conf(["n2", "n3"]));
    expect(confOf(net, "n3")).toEqual(conf(["n2", "n3"]));

    const l = net.tickUntilLeader();
    expect(["n2", "n3"]).toContain(l);
    net.tickAll(50);
    expect(net.raft("n1").role).toBe("follower");
    expect(net.raft(l).role).toBe("leader");
    net.propose(l, "after");
    expect(net.node(l === "n2" ? "n3" : "n2").appliedData()).toEqual(["after"]);
  });

  test("thesis §4.3: in the joint configuration an entry needs a majority of the new voters as well", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.addEmpty("n4");
    net.addEmpty("n5");
    const away = net.drop((m) => m.to === "n4" || m.to === "n5" || m.from === "n4" || m.from === "n5");
    const enterAt = change(net, "n1", [
      { type: "addVoter", node: "n4" },
      { type: "addVoter", node: "n5" },
      { type: "remove", node: "n2" },
      { type: "remove", node: "n3" },
    ]);
    // The enter entry commits under the old configuration; the automatic leave
    // entry is on the whole old majority but not on a majority of {n1, n4, n5}.
    expect(net.raft("n1").log.committed).toBe(enterAt);
    expect(confOf(net, "n1")).toEqual(joint(["n1", "n4", "n5"], ["n1", "n2", "n3"]));
    expect(net.raft("n2").log.lastIndex()).toBe(enterAt + 1);
    const at = net.propose("n1", "x");
    expect(net.raft("n1").log.committed).toBe(enterAt);
    away();
    net.tick("n1", 3);
    expect(net.raft("n1").log.committed).toBe(at.index);
    expect(confOf(net, "n1")).toEqual(conf(["n1", "n4", "n5"]));
    expect(net.node("n5").appliedData()).toEqual(["x"]);
  });

  test("thesis §4.3: in the joint configuration the old majority is needed too", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.addEmpty("n4");
    net.addEmpty("n5");
    const enterAt = net.raft("n1").log.lastIndex() + 1;
    // n2 and n3 take everything but stop acknowledging after the enter entry.
    const away = net.drop((m) => (m.from === "n2" || m.from === "n3") && m.type === "appResp" && m.index > enterAt);
    change(net, "n1", [
      { type: "addVoter", node: "n4" },
      { type: "addVoter", node: "n5" },
      { type: "remove", node: "n2" },
      { type: "remove", node: "n3" },
    ]);
    // The leave entry is on n1, n4 and n5 (a majority of the new voters) but
    // only n1 of the old ones is known to have it.
    expect(net.raft("n4").log.lastIndex()).toBe(enterAt + 1);
    expect(net.raft("n5").log.lastIndex()).toBe(enterAt + 1);
    expect(net.raft("n1").log.committed).toBe(enterAt);
    expect(confOf(net, "n1")).toEqual(joint(["n1", "n4", "n5"], ["n1", "n2", "n3"]));
    away();
    net.tick("n1", 3);
    expect(net.raft("n1").log.committed).toBe(enterAt + 1);
    expect(confOf(net, "n1")).toEqual(conf(["n1", "n4", "n5"]));
  });

  test("thesis §4.3: demoting a voter to learner keeps it a voter until the joint configuration is left", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const stall = net.drop((m) => m.type === "app" && m.entries.some((e) => e.conf?.op === "leave"));
    change(net, "n1", [{ type: "addLearner", node: "n3" }]);
    expect(confOf(net, "n1")).toEqual(joint(["n1", "n2"], ["n1", "n2", "n3"], [], ["n3"]));
    stall();
    net.tick("n1", 2);
    expect(confOf(net, "n1")).toEqual(conf(["n1", "n2"], ["n3"]));
    net.propose("n1", "x");
    expect(net.node("n3").appliedData()).toEqual(["x"]);
  });

  test("thesis §4.3: promoting a learner to voter", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"] });
    net.elect("n1");
    change(net, "n1", [{ type: "addVoter", node: "n4" }]);
    expect(confOf(net, "n4")).toEqual(conf(["n1", "n2", "n3", "n4"]));
    expect(net.raft("n1").status().progress.get("n4")!.isLearner).toBe(false);
  });

  test("thesis §4.3: at most one change pending: a second one is refused with ConfChangeError", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const slow = net.drop((m) => m.type === "appResp");
    net.raft("n1").proposeConfChange({ op: "enter", changes: [{ type: "addLearner", node: "n4" }] });
    net.settle();
    const last = net.raft("n1").log.lastIndex();
    expect(() => net.raft("n1").proposeConfChange({ op: "enter", changes: [{ type: "addLearner", node: "n5" }] })).toThrow(ConfChangeError);
    expect(net.raft("n1").log.lastIndex()).toBe(last);
    // Ordinary proposals are still accepted meanwhile.
    net.raft("n1").propose(bytes("x"));
    slow();
    net.tick("n1", 3);
    expect(confOf(net, "n1")).toEqual(conf(["n1", "n2", "n3"], ["n4"]));
    // Applied and left: the next change is accepted.
    expect(() => change(net, "n1", [{ type: "addLearner", node: "n5" }])).not.toThrow();
    expect(confOf(net, "n1")).toEqual(conf(["n1", "n2", "n3"], ["n4", "n5"]));
  });

  test("thesis §4.3: the automatic leave waits until the enter entry is applied", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const slow = net.drop((m) => m.type === "appResp");
    const enterAt = change(net, "n1", [{ type: "addLearner", node: "n4" }]);
    expect(net.raft("n1").log.lastIndex()).toBe(enterAt);
    expect(confEntries(net, "n1").map((e) => e.conf!.op)).toEqual(["init", "enter"]);
    slow();
    net.tick("n1", 3);
    expect(confEntries(net, "n1").map((e) => e.conf!.op)).toEqual(["init", "enter", "leave"]);
    expect(confOf(net, "n1").votersOutgoing).toEqual([]);
  });

  test("§6: invalid changes are refused with ConfChangeError before reaching the log", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const last = net.raft("n1").log.lastIndex();
    const bad = [
      { op: "enter" as const, changes: [{ type: "remove" as const, node: "n1" }, { type: "remove" as const, node: "n2" }, { type: "remove" as const, node: "n3" }] },
      { op: "enter" as const, changes: [] },
      { op: "leave" as const, changes: [] },
      { op: "init" as const, changes: [{ type: "addVoter" as const, node: "n9" }] },
    ];
    for (const cc of bad) expect(() => net.raft("n1").proposeConfChange(cc)).toThrow(ConfChangeError);
    expect(net.raft("n1").log.lastIndex()).toBe(last);
  });

  test("§6: a follower refuses a configuration change with NotLeaderError naming the leader", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    let err: unknown;
    try {
      net.raft("n2").proposeConfChange({ op: "enter", changes: [{ type: "addLearner", node: "n4" }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NotLeaderError);
    expect((err as NotLeaderError).leader).toBe("n1");
  });
});

/**
 * Witness voters (src/raft/witness.ts): a witness compacts only what every
 * data voter holds, leads only to hand leadership to an up-to-date data voter,
 * takes no proposals and never sends a snapshot.
 */
import { describe, expect, test } from "bun:test";
import { ProposalDroppedError, WITNESS_NO_SNAPSHOT } from "../../src/raft/index.ts";
import { Network, bytes } from "./harness.ts";

const W = { witnesses: ["w"] };

function cluster(): Network {
  return new Network(["d1", "d2", "w"], { raft: W });
}

describe("witness voters", () => {
  test("a leader tells the witness the smallest data voter match, and the witness compacts no further than it", () => {
    const net = cluster();
    net.elect("d1");
    net.propose("d1", "a");
    const all = net.raft("d1").log.lastIndex();
    expect(net.raft("w").witnessCompactIndex()).toBe(all);
    // d2 is cut off: d1 + w commit alone, and w must keep everything d2 lacks.
    const heal = net.isolate("d2");
    net.propose("d1", "b");
    net.propose("d1", "c");
    net.tick("d1", 2); // heartbeats carry the figure too
    expect(net.raft("w").log.committed).toBe(all + 2);
    expect(net.raft("w").witnessCompactIndex()).toBe(all);
    // A data node's compaction point is its own business: 0.
    expect(net.raft("d1").witnessCompactIndex()).toBe(0);
    heal();
    net.tick("d1", 2);
    expect(net.raft("w").witnessCompactIndex()).toBe(all + 2);
  });

  test("leader + witness acknowledged, leader dies: the witness wins, brings the other data node up to date and hands it leadership", () => {
    const net = cluster();
    net.elect("d1");
    const healD2 = net.isolate("d2");
    net.propose("d1", "only-on-d1-and-w");
    // The witness compacts what d2 does not have? Never: here it may compact to index 2 at most.
    const keep = net.raft("w").witnessCompactIndex();
    expect(keep).toBeLessThan(net.raft("w").log.lastIndex());
    net.node("w").storage.createSnapshot(keep, net.node("w").storage.initialState().confState);
    net.node("w").storage.compact(keep);
    healD2();
    net.nodes.delete("d1"); // d1 dies
    // d2 cannot win (w has a longer log); w wins, catches d2 up and hands over at once.
    net.clearLog();
    expect(net.tickUntilLeader()).toBe("d2");
    expect(net.sent((m) => m.type === "timeoutNow" && m.from === "w" && m.to === "d2").length).toBe(1);
    expect(net.raft("w").role).toBe("follower");
    expect(net.node("d2").appliedData()).toContain("only-on-d1-and-w");
    expect(net.node("w").events.some((e) => e.kind === "dropped" && e.reason === WITNESS_NO_SNAPSHOT)).toBe(false);
  });

  test("a witness leader refuses proposals and never sends a snapshot", () => {
    const net = cluster();
    // d2 is down while w leads: w stays leader (d1 votes) but hands off to d1 at once.
    net.isolate("d2");
    net.elect("w");
    expect(net.raft("d1").role).toBe("leader");
    // Make w lead with no data voter reachable: it refuses writes.
    const net2 = cluster();
    net2.drop((m) => m.type === "appResp" || m.type === "heartbeatResp");
    net2.elect("w");
    expect(net2.raft("w").role).toBe("leader");
    expect(() => net2.raft("w").propose(bytes("x"))).toThrow(ProposalDroppedError);
    expect(() => net2.raft("w").proposeBatch([bytes("x")])).toThrow(ProposalDroppedError);
  });

  test("a witness leader reports, rather than sends, a snapshot a data voter would need", () => {
    const net = cluster();
    net.elect("d1");
    const healD2 = net.isolate("d2");
    net.propose("d1", "a");
    net.propose("d1", "b");
    // Break the rule on purpose: compact the witness past what d2 has.
    const w = net.node("w");
    const idx = net.raft("w").status().applied;
    w.storage.createSnapshot(idx, w.storage.initialState().confState);
    w.storage.compact(idx);
    healD2();
    net.nodes.delete("d1");
    expect(net.tickUntilLeader()).toBe("w");
    net.tick("w", 3);
    expect(net.raft("w").role).toBe("leader");
    expect(w.events.some((e) => e.kind === "dropped" && e.reason === WITNESS_NO_SNAPSHOT && e.what === "snapshot to d2")).toBe(true);
  });
});

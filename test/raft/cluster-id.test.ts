/**
 * The cluster ID (not in the paper; DESIGN.md "Each cluster gets a unique
 * cluster ID ... carried on every peer message; a peer with another cluster
 * ID is refused"). Messages from another cluster must never reach the
 * protocol (§5.1 terms included), and a joining node learns the ID from its
 * leader.
 */
import { describe, expect, test } from "bun:test";
import { CLUSTER, Network, msg } from "./harness.ts";

describe("cluster ID", () => {
  // Not in the paper (DESIGN.md: the cluster ID is carried on every peer message); it guards every RPC of Figure 2 (§5).
  test("every message carries the cluster ID", () => {
    const net = new Network(["n1", "n2", "n3"], { learners: ["n4"] });
    net.elect("n1");
    net.propose("n1", "x");
    net.raft("n2").readIndex("r");
    net.tickAll(3);
    expect(net.delivered.length).toBeGreaterThan(20);
    expect(net.delivered.filter((m) => m.cluster !== CLUSTER)).toEqual([]);
  });

  test("a message with another cluster ID is dropped and reported as an event, even with a higher term (§5.1)", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const n2 = net.raft("n2");
    const before = n2.hardState();
    const lastIndex = n2.log.lastIndex();
    n2.step(msg({ type: "app", from: "x1", to: "n2", term: 9, cluster: "other", index: 2, logTerm: 2, entries: [{ index: 3, term: 9, kind: "normal", data: new Uint8Array([1]) }], commit: 3 }));
    n2.step(msg({ type: "vote", from: "x1", to: "n2", term: 9, cluster: "other", index: 99, logTerm: 9 }));
    expect(n2.hardState()).toEqual(before);
    expect(n2.log.lastIndex()).toBe(lastIndex);
    const rd = n2.ready();
    expect(rd.messages).toEqual([]);
    expect(rd.events).toEqual([
      { kind: "clusterMismatch", from: "x1", theirs: "other", ours: CLUSTER },
      { kind: "clusterMismatch", from: "x1", theirs: "other", ours: CLUSTER },
    ]);
    n2.advance(rd);
  });

  // DESIGN.md cluster ID; without it the foreign term would depose the leader (§5.1).
  test("a leader ignores answers from another cluster", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.raft("n1").step(msg({ type: "appResp", from: "n2", to: "n1", term: 7, cluster: "other" }));
    expect(net.raft("n1").role).toBe("leader");
    expect(net.raft("n1").term).toBe(2);
  });

  // DESIGN.md cluster ID: a joiner learns it from its leader (the leader contacts new servers, thesis §4.2.1).
  test("a node with clusterId null adopts the leader's ID from its first append and hands it out to persist", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const n4 = net.addEmpty("n4");
    expect(n4.raft.clusterId).toBeNull();
    net.raft("n1").proposeConfChange({ op: "enter", changes: [{ type: "addLearner", node: "n4" }] });
    // Run the cluster by hand until n4 has something to report.
    for (let i = 0; i < 20 && !n4.raft.hasReady(); i++) {
      for (const n of ["n1", "n2", "n3"]) for (const m of net.node(n).processReady()) net.raft(m.to).step(m);
    }
    const rd = n4.raft.ready();
    expect(rd.clusterId).toBe(CLUSTER);
    expect(rd.events).toContainEqual({ kind: "clusterAdopted", clusterId: CLUSTER, from: "n1" });
    expect(rd.messages.length).toBeGreaterThan(0);
    for (const m of rd.messages) expect(m.cluster).toBe(CLUSTER);
    n4.storage.append(rd.entries);
    if (rd.hardState) n4.storage.setHardState(rd.hardState);
    n4.raft.advance(rd);
    expect(n4.raft.clusterId).toBe(CLUSTER);
    for (const m of rd.messages) net.raft(m.to).step(m);
    net.settle();
    // Only once: the Readys processed since (recorded by the harness) adopted nothing again.
    net.propose("n1", "x");
    expect(n4.appliedData()).toEqual(["x"]);
    expect(n4.events.filter((e) => e.kind === "clusterAdopted")).toEqual([]);
  });

  // DESIGN.md cluster ID: only a leader (§5.3 AppendEntries) or a candidate (§5.2 RequestVote) may introduce it.
  test("a node with clusterId null does not adopt an ID from an answer, only from a leader or a candidate", () => {
    const net = new Network(["n1", "n2", "n3"]);
    const n4 = net.addEmpty("n4");
    n4.raft.step(msg({ type: "heartbeatResp", from: "n1", to: "n4", term: 2, cluster: "other" }));
    n4.raft.step(msg({ type: "appResp", from: "n1", to: "n4", term: 2, cluster: "other" }));
    expect(n4.raft.clusterId).toBeNull();
    const rd = n4.raft.ready();
    expect(rd.clusterId).toBeUndefined();
    expect(rd.events.map((e) => e.kind)).toEqual(["clusterMismatch", "clusterMismatch"]);
    n4.raft.advance(rd);
    // A vote request does count (a voter added before it heard from the leader must be able to vote).
    n4.raft.step(msg({ type: "preVote", from: "n2", to: "n4", term: 3, cluster: CLUSTER, index: 1, logTerm: 1 }));
    expect(n4.raft.clusterId).toBe(CLUSTER);
  });

  // DESIGN.md cluster ID: the foreign higher term is not adopted (§5.1 applies within one cluster only).
  test("once adopted, another cluster's leader is refused", () => {
    const net = new Network(["n1", "n2", "n3"]);
    const n4 = net.addEmpty("n4");
    n4.raft.step(msg({ type: "heartbeat", from: "n1", to: "n4", term: 2, cluster: CLUSTER }));
    n4.processReady();
    n4.raft.step(msg({ type: "heartbeat", from: "x1", to: "n4", term: 5, cluster: "other" }));
    expect(n4.raft.clusterId).toBe(CLUSTER);
    expect(n4.raft.term).toBe(2);
    expect(n4.raft.lead).toBe("n1");
  });

  // DESIGN.md cluster ID: an empty ID is never adopted, so no foreign term reaches §5.1 handling.
  test("a message without a cluster ID is refused even by a node that has none yet", () => {
    const net = new Network(["n1", "n2", "n3"]);
    const n4 = net.addEmpty("n4");
    n4.raft.step(msg({ type: "app", from: "n1", to: "n4", term: 2, cluster: "" }));
    expect(n4.raft.clusterId).toBeNull();
    expect(n4.raft.term).toBe(0);
  });

  // DESIGN.md "a limit on everything": mismatch reports are bounded per Ready (not a protocol rule; the messages are dropped before §5.1 handling).
  test("a flood of mismatches is capped at eventsMax per Ready, with a count of what was dropped", () => {
    const net = new Network(["n1", "n2", "n3"], { nodeRaft: { n2: { eventsMax: 5 } } });
    const n2 = net.raft("n2");
    for (let i = 0; i < 12; i++) n2.step(msg({ type: "heartbeat", from: `x${i}`, to: "n2", term: 2, cluster: "other" }));
    const rd = n2.ready();
    expect(rd.events.length).toBe(6);
    expect(rd.events.slice(0, 5).every((e) => e.kind === "clusterMismatch")).toBe(true);
    expect(rd.events[5]).toMatchObject({ kind: "dropped", what: "7 events" });
    n2.advance(rd);
  });
});

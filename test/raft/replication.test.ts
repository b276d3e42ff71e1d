/**
 * Log replication (Raft §5.3): appends, the consistency check, conflict
 * repair with fast backtracking, and flow control: batching and pipelining
 * (thesis §10.2.2), probe mode, message size and uncommitted-bytes limits.
 */
import { describe, expect, test } from "bun:test";
import { ProposalDroppedError, type Entry, type Message, type NodeId } from "../../src/raft/index.ts";
import { Network, TestNode, bootstrapStorage, bytes, logOf, msg, text } from "./harness.ts";

function follower(id: NodeId, log: [index: number, term: number][], term: number): TestNode {
  const storage = bootstrapStorage(["n1", "n2", "n3"]);
  storage.append(log.map(([index, t]) => ({ index, term: t, kind: "normal", data: new Uint8Array([index]) })));
  storage.setHardState({ term, vote: "", commit: 1 });
  return new TestNode(id, { storage, seed: 3, raft: { applied: 1 } });
}

function ent(index: number, term: number, data = "e"): Entry {
  return { index, term, kind: "normal", data: bytes(data) };
}

function progress(net: Network, leader: NodeId, id: NodeId) {
  const p = net.raft(leader).status().progress.get(id);
  if (!p) throw new Error(`no progress for ${id}`);
  return p;
}

/** The leader's Ready, with its messages kept back from the network. */
function leaderOut(net: Network, id: NodeId): Message[] {
  return net.node(id).processReady();
}

describe("appends and commit on followers (§5.3)", () => {
  test("§5.3: a proposal goes out in the very next Ready, not at the next heartbeat", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const at = net.raft("n1").propose(bytes("now"));
    const rd = net.raft("n1").ready();
    // Persisted and sent in the same Ready, without any tick in between.
    expect(rd.entries.map((e) => e.index)).toEqual([at.index]);
    const apps = rd.messages.filter((m) => m.type === "app");
    expect(apps.map((m) => m.to).sort()).toEqual(["n2", "n3"]);
    for (const m of apps) expect(m.entries.map(text)).toEqual(["now"]);
    net.raft("n1").advance(rd);
  });

  test("§5.3: an entry is committed once a majority stores it; a follower that was away catches up and applies it", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const heal = net.isolate("n3");
    const at = net.propose("n1", "x");
    expect(net.raft("n1").log.committed).toBe(at.index);
    expect(net.raft("n2").log.committed).toBe(at.index);
    expect(net.node("n3").appliedData()).toEqual([]);
    heal();
    net.tick("n1"); // a heartbeat answer restarts replication to n3
    expect(net.node("n3").appliedData()).toEqual(["x"]);
    expect(logOf(net.node("n3"))).toEqual(logOf(net.node("n1")));
  });

  test("§5.3: a follower commits min(leaderCommit, index of the last new entry)", () => {
    const n = follower("n2", [], 2);
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: [ent(2, 2)], commit: 9 }));
    expect(n.raft.log.committed).toBe(2);
    expect(n.processReady()).toEqual([expect.objectContaining({ type: "appResp", index: 2, reject: false })]);
  });

  test("§5.3: an old (re-delivered) append does not truncate entries the follower already has", () => {
    const n = follower("n2", [[2, 2], [3, 2], [4, 2]], 2);
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: [ent(2, 2)], commit: 4 }));
    expect(n.raft.log.lastIndex()).toBe(4);
    // Only what this append proves matches the leader may be committed.
    expect(n.raft.log.committed).toBe(2);
  });

  test("§5.3: a follower truncates a conflicting suffix and takes the leader's entries", () => {
    const n = follower("n2", [[2, 2], [3, 2], [4, 2]], 2);
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 3, index: 2, logTerm: 2, entries: [ent(3, 3, "new")], commit: 3 }));
    expect(logOf(n)).toEqual(["1/1", "2/2", "3/3"]);
    n.processReady();
    expect(n.applied.map((e) => `${e.index}/${e.term}`)).toEqual(["2/2", "3/3"]);
    expect(text(n.applied[1]!)).toBe("new");
  });

  test("§5.3: a heartbeat only commits what the follower is known to hold (commit capped by its match)", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const heal = net.drop((m) => m.to === "n3" && m.type === "app");
    net.propose("n1", "x");
    net.clearLog();
    net.tick("n1");
    const hb = net.sent((m) => m.type === "heartbeat" && m.to === "n3");
    expect(hb.length).toBe(1);
    expect(hb[0]!.commit).toBe(2);
    expect(net.sent((m) => m.type === "heartbeat" && m.to === "n2")[0]!.commit).toBe(3);
    expect(net.raft("n3").log.committed).toBe(2);
    heal();
  });
});

describe("the consistency check and fast backtracking (§5.3)", () => {
  // Follower log after the bootstrap entry; the leader's append is at prevIndex/prevTerm.
  const cases: { name: string; log: [number, number][]; prev: [number, number]; hint: [number, number] }[] = [
    { name: "a follower missing entries points at its last index", log: [[2, 2]], prev: [7, 4], hint: [2, 2] },
    { name: "a follower with an older-term entry at prevIndex points at it", log: [[2, 2], [3, 2], [4, 2], [5, 2]], prev: [5, 3], hint: [5, 2] },
    { name: "a follower with a longer log points below prevIndex", log: [[2, 2], [3, 2], [4, 2], [5, 2], [6, 2]], prev: [4, 3], hint: [4, 2] },
    { name: "a follower skips a whole run of entries from a newer term", log: [[2, 2], [3, 5], [4, 5], [5, 5]], prev: [5, 3], hint: [2, 2] },
  ];
  for (const c of cases) {
    test(`§5.3 rejectHint/logTerm: ${c.name}`, () => {
      const n = follower("n2", c.log, 5);
      const before = logOf(n);
      n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 5, index: c.prev[0], logTerm: c.prev[1], entries: [ent(c.prev[0] + 1, 5)], commit: 1 }));
      expect(logOf(n)).toEqual(before);
      const out = n.processReady();
      expect(out.length).toBe(1);
      expect(out[0]).toMatchObject({ type: "appResp", reject: true, index: c.prev[0], rejectHint: c.hint[0], logTerm: c.hint[1] });
    });
  }

  /**
   * n1 (term 2) writes 20 entries nobody else gets; n2 leads term 3 and
   * commits 10 entries with n3; n3 then leads term 4. n3's first probe to n1
   * is at 13/3, where n1 has a term-2 entry: one rejection with the hint
   * (13, term 2) lets n3 jump straight to index 2, instead of walking back
   * one index per round trip (11 round trips).
   */
  function divergedCluster(): Network {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    const back = net.isolate("n1");
    for (let i = 0; i < 20; i++) net.propose("n1", `stale${i}`);
    net.elect("n2");
    for (let i = 0; i < 10; i++) net.propose("n2", `new${i}`);
    expect(net.raft("n2").log.lastIndex()).toBe(13);
    net.elect("n3");
    expect(net.raft("n3").role).toBe("leader");
    expect(net.raft("n3").term).toBe(4);
    back();
    return net;
  }

  test("§5.3 fast backtracking: a conflicting run of an old term is skipped in one round trip", () => {
    const net = divergedCluster();
    net.clearLog();
    net.tick("n3"); // heartbeat -> n1 answers -> n3 probes n1
    const rejects = net.sent((m) => m.type === "appResp" && m.from === "n1" && m.reject);
    expect(rejects.length).toBe(1);
    expect(rejects[0]).toMatchObject({ index: 13, rejectHint: 13, logTerm: 2 });
    const probes = net.sent((m) => m.type === "app" && m.to === "n1");
    expect(probes.map((m) => m.index)).toEqual([13, 2, ...probes.slice(2).map((m) => m.index)]);
    // Log matching (§5.3): n1 now holds exactly the leader's log, and applied none of its stale entries.
    expect(logOf(net.node("n1"))).toEqual(logOf(net.node("n3")));
    expect(net.node("n1").appliedData()).toEqual([...Array(10).keys()].map((i) => `new${i}`));
  });

  test("§5.3 fast backtracking: a follower far behind is found in one round trip", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    const back = net.isolate("n3");
    for (let i = 0; i < 10; i++) net.propose("n1", `v${i}`);
    net.elect("n2"); // re-election, so the new leader starts probing at its last index
    back();
    net.clearLog();
    net.tick("n2");
    const rejects = net.sent((m) => m.type === "appResp" && m.from === "n3" && m.reject);
    expect(rejects.length).toBe(1);
    expect(rejects[0]).toMatchObject({ index: 12, rejectHint: 2, logTerm: 2 });
    expect(logOf(net.node("n3"))).toEqual(logOf(net.node("n2")));
  });

  test("§5.3: a lost append in replicate state is detected by the next append and resent", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    let lose = 1;
    net.drop((m) => m.type === "app" && m.to === "n2" && m.entries.length > 0 && lose-- > 0);
    net.clearLog();
    net.propose("n1", "a"); // lost on the way to n2; committed with n3
    expect(net.dropped.map((m) => [m.type, m.to, m.entries.map(text)])).toEqual([["app", "n2", ["a"]]]);
    // The append announcing the commit has a prevIndex n2 lacks: it rejects, the
    // leader probes back and resends "a" (§5.3: the leader retries until the logs match).
    const rejects = net.sent((m) => m.type === "appResp" && m.from === "n2" && m.reject);
    expect(rejects.map((m) => m.index)).toEqual([3]);
    expect(net.node("n2").appliedData()).toEqual(["a"]);
    expect(progress(net, "n1", "n2").state).toBe("replicate");
  });
});

describe("batching, pipelining and probing (thesis §10.2.2)", () => {
  test("thesis §10.2.2 batching: proposals made before ready() go out as one append per follower", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const r = net.raft("n1");
    for (const d of ["a", "b", "c", "d", "e"]) r.propose(bytes(d));
    const rd = r.ready();
    expect(rd.entries.map(text)).toEqual(["a", "b", "c", "d", "e"]);
    const apps = rd.messages.filter((m) => m.type === "app");
    expect(apps.map((m) => m.to).sort()).toEqual(["n2", "n3"]);
    for (const m of apps) expect(m.entries.map(text)).toEqual(["a", "b", "c", "d", "e"]);
    r.advance(rd);
  });

  test("thesis §10.2.2 batching: proposeBatch appends consecutive entries of one term", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const at = net.raft("n1").proposeBatch([bytes("a"), bytes("b"), bytes("c")]);
    expect(at).toEqual({ firstIndex: 3, lastIndex: 5, term: 2 });
    net.settle();
    for (const n of net.nodes.values()) expect(n.appliedData()).toEqual(["a", "b", "c"]);
  });

  test("thesis §10.2.2 pipelining: appends go out without waiting for acks, at most inflightMax per follower", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { inflightMax: 3 } });
    net.elect("n1");
    expect(progress(net, "n1", "n2").state).toBe("replicate");
    const r = net.raft("n1");
    const toN2: Message[] = [];
    for (const d of ["a", "b", "c", "d", "e"]) {
      r.propose(bytes(d));
      toN2.push(...leaderOut(net, "n1").filter((m) => m.type === "app" && m.to === "n2"));
    }
    // Three appends in flight, one entry each; d and e wait for the window.
    expect(toN2.map((m) => m.entries.map(text))).toEqual([["a"], ["b"], ["c"]]);
    expect(progress(net, "n1", "n2").next).toBe(6);

    // The follower acks the first append: the window opens and the rest goes in one append.
    net.raft("n2").step(toN2[0]!);
    const acks = net.node("n2").processReady();
    expect(acks.map((m) => [m.type, m.index])).toEqual([["appResp", 3]]);
    r.step(acks[0]!);
    const more = leaderOut(net, "n1").filter((m) => m.type === "app" && m.to === "n2");
    expect(more.map((m) => m.entries.map(text))).toEqual([["d", "e"]]);
  });

  test("thesis §10.2.2 probe mode: a follower whose log is unknown gets one append at a time", () => {
    const net = new Network(["n1", "n2", "n3"]);
    const back = net.isolate("n3");
    net.elect("n1");
    expect(progress(net, "n1", "n3").state).toBe("probe");
    expect(net.dropped.filter((m) => m.type === "app" && m.to === "n3").length).toBe(1);
    net.clearLog();
    const r = net.raft("n1");
    const toN3: Message[] = [];
    for (const d of ["a", "b", "c"]) {
      r.propose(bytes(d));
      net.settle();
      toN3.push(...net.dropped.filter((m) => m.type === "app" && m.to === "n3"));
      net.clearLog();
    }
    // The probe sent at election is still unanswered: nothing more goes to n3.
    expect(toN3).toEqual([]);
    back();
    net.clearLog();
    net.tick("n1"); // the heartbeat answer lets one probe through, its ack switches to replicate
    const apps = net.sent((m) => m.type === "app" && m.to === "n3" && m.entries.length > 0);
    expect(apps.length).toBe(1);
    expect(apps[0]!.entries.map((e) => e.index)).toEqual([2, 3, 4, 5]);
    expect(progress(net, "n1", "n3").state).toBe("replicate");
    expect(net.node("n3").appliedData()).toEqual(["a", "b", "c"]);
  });

  test("thesis §10.2.2: an unreachable follower falls back from replicate to probe", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    expect(progress(net, "n1", "n2").state).toBe("replicate");
    net.raft("n1").reportUnreachable("n2");
    expect(progress(net, "n1", "n2").state).toBe("probe");
    expect(progress(net, "n1", "n2").next).toBe(progress(net, "n1", "n2").match + 1);
  });

  test("§5.3: appends respect msgBytesMax (but always carry at least one entry)", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { msgBytesMax: 300 } });
    net.elect("n1");
    net.clearLog();
    const r = net.raft("n1");
    for (let i = 0; i < 6; i++) r.propose(new Uint8Array(100).fill(i));
    r.propose(new Uint8Array(1000)); // bigger than the limit on its own
    net.settle();
    const apps = net.sent((m) => m.type === "app" && m.to === "n2" && m.entries.length > 0);
    const sizes = apps.map((m) => m.entries.reduce((s, e) => s + e.data.byteLength + 24, 0));
    expect(apps.length).toBeGreaterThan(1);
    for (const [i, m] of apps.entries()) {
      if (m.entries.length > 1) expect(sizes[i]!).toBeLessThanOrEqual(300);
    }
    expect(apps.flatMap((m) => m.entries.map((e) => e.index))).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(net.raft("n2").log.committed).toBe(9);
  });

  // thesis §10.2.2 flow control: the leader bounds what it accepts ahead of commit.
  test("a proposal over uncommittedBytesMax is refused with ProposalDroppedError until entries commit", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { uncommittedBytesMax: 250 } });
    net.elect("n1");
    const back = net.isolate("n1");
    const r = net.raft("n1");
    r.propose(new Uint8Array(100));
    r.propose(new Uint8Array(100));
    expect(() => r.propose(new Uint8Array(100))).toThrow(ProposalDroppedError);
    net.settle();
    back();
    net.tick("n1");
    expect(net.raft("n1").log.committed).toBe(4);
    expect(() => net.propose("n1", "fits again")).not.toThrow();
  });
});

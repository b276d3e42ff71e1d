/**
 * Leader election: terms (Raft §5.1), elections with randomized timeouts
 * (§5.2), one vote per term, and the election restriction (§5.4.1).
 */
import { describe, expect, test } from "bun:test";
import { MemoryStorage, type Entry, type Message, type NodeId } from "../../src/raft/index.ts";
import { Network, TestNode, bootstrapStorage, msg } from "./harness.ts";

/** A single core on its own, with the bootstrap config of `voters` and optionally more log. */
function lone(id: NodeId, opts: { voters?: NodeId[]; extra?: [index: number, term: number][]; term?: number; seed?: number; raft?: ConstructorParameters<typeof TestNode>[1]["raft"] } = {}): TestNode {
  const storage = bootstrapStorage(opts.voters ?? ["n1", "n2", "n3"]);
  const extra: Entry[] = (opts.extra ?? []).map(([index, term]) => ({ index, term, kind: "normal", data: new Uint8Array([index]) }));
  storage.append(extra);
  const term = opts.term ?? extra[extra.length - 1]?.term ?? 1;
  storage.setHardState({ term, vote: "", commit: 1 });
  return new TestNode(id, { storage, seed: opts.seed ?? 7, raft: { applied: 1, ...opts.raft } });
}

function voteReq(from: NodeId, to: NodeId, term: number, lastIndex: number, lastTerm: number): Message {
  return msg({ type: "vote", from, to, term, index: lastIndex, logTerm: lastTerm });
}

function ticksUntilCampaign(n: TestNode, limit = 100): number {
  const [startRole, startTerm] = [n.raft.role, n.raft.term];
  for (let t = 1; t <= limit; t++) {
    n.raft.tick();
    if (n.raft.role !== startRole || n.raft.term !== startTerm) return t;
  }
  throw new Error(`${n.id} did not campaign within ${limit} ticks`);
}

describe("elections (§5.2)", () => {
  test("§5.2: a follower that hears nothing for an election timeout campaigns and wins with a majority", () => {
    const net = new Network(["n1", "n2", "n3"]);
    let ticks = 0;
    while (net.raft("n1").role !== "leader" && ticks < 40) {
      net.tick("n1");
      ticks++;
    }
    expect(net.raft("n1").role).toBe("leader");
    // electionTicks is 10: not before the timeout, and within twice it (§5.2, randomized in [T, 2T)).
    expect(ticks).toBeGreaterThanOrEqual(10);
    expect(ticks).toBeLessThan(20);
    for (const id of ["n1", "n2", "n3"]) {
      expect(net.raft(id).term).toBe(2);
      expect(net.raft(id).lead).toBe("n1");
    }
    expect(net.raft("n2").vote).toBe("n1");
  });

  test("§5.2: election timeouts are randomized in [electionTicks, 2*electionTicks) and follow the seed", () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 60; seed++) {
      const t = ticksUntilCampaign(lone("n1", { seed }));
      expect(t).toBeGreaterThanOrEqual(10);
      expect(t).toBeLessThan(20);
      seen.add(t);
      // Same seed, same timeout: the core draws only from the Rng it is given.
      expect(ticksUntilCampaign(lone("n1", { seed }))).toBe(t);
    }
    // Spread out, so that split votes resolve (§5.2).
    expect(seen.size).toBeGreaterThanOrEqual(6);
  });

  test("§5.2: a candidate whose election times out draws a new random timeout and campaigns again in term+1", () => {
    const intervals = new Set<number>();
    for (let seed = 0; seed < 30; seed++) {
      const n = lone("n1", { seed, raft: { preVote: false } });
      ticksUntilCampaign(n);
      expect(n.raft.role).toBe("candidate");
      expect(n.raft.term).toBe(2);
      const again = ticksUntilCampaign(n);
      expect(n.raft.role).toBe("candidate");
      expect(n.raft.term).toBe(3);
      expect(again).toBeGreaterThanOrEqual(10);
      expect(again).toBeLessThan(20);
      intervals.add(again);
    }
    expect(intervals.size).toBeGreaterThanOrEqual(5);
  });

  test("§5.2: a split vote elects nobody in that term; a later term elects exactly one leader", () => {
    const net = new Network(["n1", "n2", "n3", "n4"], { raft: { preVote: false } });
    // n1 and n3 campaign at once; n2 only hears n1, n4 only hears n3.
    net.cut("n1", "n4");
    net.cut("n3", "n2");
    net.raft("n1").campaign();
    net.raft("n3").campaign();
    net.settle();
    expect(net.raft("n1").role).toBe("candidate");
    expect(net.raft("n3").role).toBe("candidate");
    expect(net.raft("n2").vote).toBe("n1");
    expect(net.raft("n4").vote).toBe("n3");
    expect(net.leader()).toBeUndefined();

    net.heal();
    for (let i = 0; i < 60 && net.leader() === undefined; i++) net.tickAll();
    const leader = net.leader();
    expect(leader).toBeDefined();
    const term = net.raft(leader!).term;
    expect(term).toBeGreaterThanOrEqual(3);
    const leaders = [...net.nodes.values()].filter((n) => n.raft.role === "leader");
    expect(leaders.length).toBe(1);
    for (const n of net.nodes.values()) {
      expect(n.raft.term).toBe(term);
      expect(n.raft.lead).toBe(leader!);
    }
  });

  test("§5.2: a candidate rejected by a majority goes back to follower without a leader", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { preVote: false, checkQuorum: false } });
    net.elect("n1");
    net.isolate("n3");
    net.propose("n1", "x");
    net.heal();
    net.isolate("n1"); // n3 now campaigns against n2 only, with a log missing "x"
    net.elect("n3");
    expect(net.raft("n3").role).toBe("candidate"); // n3: yes, n2: no, n1: unknown -> still pending
    net.raft("n3").campaign(); // term 4
    net.heal();
    net.settle();
    // Both n1 and n2 refuse: n3 lost and steps back.
    expect(net.raft("n3").role).toBe("follower");
    expect(net.raft("n3").lead).toBe("");
    expect(net.raft("n3").term).toBe(4);
    expect(net.leader()).toBeUndefined();
  });

  test("§5.2: a candidate that receives an append from a leader of its own term becomes its follower", () => {
    const n = lone("n3", { raft: { preVote: false } });
    n.raft.campaign();
    n.processReady();
    expect(n.raft.role).toBe("candidate");
    expect(n.raft.term).toBe(2);
    n.raft.step(msg({ type: "app", from: "n1", to: "n3", term: 2, index: 1, logTerm: 1, commit: 1 }));
    expect(n.raft.role).toBe("follower");
    expect(n.raft.lead).toBe("n1");
    expect(n.raft.term).toBe(2);
  });
});

describe("terms (§5.1)", () => {
  test("§5.1: a leader that sees a higher term adopts it and steps down", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    net.raft("n1").step(msg({ type: "heartbeatResp", from: "n2", to: "n1", term: 5 }));
    expect(net.raft("n1").role).toBe("follower");
    expect(net.raft("n1").term).toBe(5);
    expect(net.raft("n1").vote).toBe("");
    expect(net.raft("n1").lead).toBe("");
  });

  test("§5.1: a follower rejects an append with a stale term and its answer makes the stale leader step down", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    const unisolate = net.isolate("n1");
    net.elect("n2"); // term 3; n1 still believes it leads term 2
    expect(net.raft("n2").role).toBe("leader");
    expect(net.raft("n1").role).toBe("leader");
    const at = net.propose("n1", "stale");
    expect(at.term).toBe(2);
    const n2Log = net.raft("n2").log.lastIndex();

    unisolate();
    net.clearLog();
    net.tick("n1"); // a heartbeat in term 2
    const answers = net.sent((m) => m.to === "n1" && m.type === "appResp");
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.every((m) => m.term === 3)).toBe(true);
    expect(net.raft("n1").role).toBe("follower");
    expect(net.raft("n1").term).toBe(3);
    expect(net.raft("n2").role).toBe("leader");
    expect(net.raft("n2").log.lastIndex()).toBe(n2Log);

    // The stale entry is replaced once n2 replicates (its probe to n1 resumes
    // on the next heartbeat answer), and is never applied anywhere.
    net.propose("n2", "fresh");
    net.tick("n2");
    expect(net.raft("n1").log.lastIndex()).toBe(net.raft("n2").log.lastIndex());
    for (const n of net.nodes.values()) {
      expect(n.appliedData()).toEqual(["fresh"]);
    }
  });

  test("§5.1: a follower ignores an append whose term is older than its own", () => {
    const n = lone("n2", { term: 3 });
    const before = n.raft.log.lastIndex();
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: [{ index: 2, term: 2, kind: "normal", data: new Uint8Array([1]) }], commit: 2 }));
    expect(n.raft.log.lastIndex()).toBe(before);
    expect(n.raft.log.committed).toBe(1);
    expect(n.raft.term).toBe(3);
    const out = n.processReady();
    expect(out.map((m) => [m.type, m.term])).toEqual([["appResp", 3]]);
  });
});

describe("votes (§5.2, §5.4.1)", () => {
  test("§5.2: a node votes for at most one candidate per term, and persists the vote before answering", () => {
    const n = lone("n3");
    n.raft.step(voteReq("n1", "n3", 2, 1, 1));
    const rd = n.raft.ready();
    expect(rd.hardState).toEqual({ term: 2, vote: "n1", commit: 1 });
    expect(rd.messages.map((m) => [m.type, m.to, m.reject])).toEqual([["voteResp", "n1", false]]);
    n.raft.advance(rd);

    n.raft.step(voteReq("n2", "n3", 2, 1, 1));
    expect(n.processReady().map((m) => [m.type, m.to, m.reject])).toEqual([["voteResp", "n2", true]]);
    // Asking again in the same term gets the same answer.
    n.raft.step(voteReq("n1", "n3", 2, 1, 1));
    expect(n.processReady().map((m) => [m.type, m.to, m.reject])).toEqual([["voteResp", "n1", false]]);
    expect(n.raft.vote).toBe("n1");
    // A new term is a new vote.
    n.raft.step(voteReq("n2", "n3", 3, 1, 1));
    expect(n.processReady().map((m) => [m.type, m.to, m.reject])).toEqual([["voteResp", "n2", false]]);
    expect(n.raft.vote).toBe("n2");
  });

  // The voter's log is [1/1, 2/2, 3/2]: last term 2, last index 3.
  const cases: { name: string; lastIndex: number; lastTerm: number; granted: boolean }[] = [
    { name: "a lower last term is refused even with a longer log", lastIndex: 10, lastTerm: 1, granted: false },
    { name: "the same last term with a shorter log is refused", lastIndex: 2, lastTerm: 2, granted: false },
    { name: "the same last term and length is granted", lastIndex: 3, lastTerm: 2, granted: true },
    { name: "the same last term with a longer log is granted", lastIndex: 5, lastTerm: 2, granted: true },
    { name: "a higher last term is granted even with a shorter log", lastIndex: 2, lastTerm: 3, granted: true },
  ];
  for (const c of cases) {
    test(`§5.4.1 election restriction: ${c.name}`, () => {
      const n = lone("n3", { extra: [[2, 2], [3, 2]] });
      n.raft.step(voteReq("n1", "n3", 4, c.lastIndex, c.lastTerm));
      const out = n.processReady();
      expect(out.map((m) => [m.type, m.reject])).toEqual([["voteResp", !c.granted]]);
      expect(n.raft.vote).toBe(c.granted ? "n1" : "");
      expect(n.raft.term).toBe(4); // the term is adopted either way (§5.1)
    });
  }

  test("§5.4.1: with the unsafe voteWithoutLogCheck switch the out-of-date candidate is granted (the simulator's planted bug)", () => {
    const n = lone("n3", { extra: [[2, 2], [3, 2]], raft: { unsafe: { voteWithoutLogCheck: true } } });
    n.raft.step(voteReq("n1", "n3", 4, 10, 1));
    expect(n.processReady().map((m) => [m.type, m.reject])).toEqual([["voteResp", false]]);
  });

  test("§5.4.1: a node missing a committed entry cannot be elected; one holding it can, and keeps it", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { preVote: false, checkQuorum: false } });
    net.elect("n1");
    net.isolate("n3");
    net.propose("n1", "x"); // committed by n1 and n2
    expect(net.raft("n1").log.committed).toBe(3);
    net.heal();
    net.isolate("n1");
    net.elect("n3");
    expect(net.raft("n3").role).not.toBe("leader");
    expect(net.sent((m) => m.type === "voteResp" && m.from === "n2" && m.to === "n3").map((m) => m.reject)).toEqual([true]);

    net.elect("n2");
    expect(net.raft("n2").role).toBe("leader");
    expect(net.node("n3").appliedData()).toEqual(["x"]);
    expect(net.node("n2").appliedData()).toEqual(["x"]);
  });
});

// Not in the paper: a wiped voter forgot its log and its vote (§5.2 assumes stable storage), so with
// emptyNodeVotes: false it must not help elect a candidate that may lack committed entries.
test("with emptyNodeVotes false a node with an empty log refuses to vote (stable storage lost, §5.2)", () => {
  const vote = (to: string) => ({ type: "vote" as const, from: "b", to, term: 5, cluster: "test-cluster", index: 0, logTerm: 0, entries: [], commit: 0, commitTerm: 0, reject: false, rejectHint: 0, context: "" });
  const wiped = new TestNode("z", { storage: new MemoryStorage(), seed: 9, raft: { emptyNodeVotes: false } });
  wiped.raft.step(vote("z"));
  expect(wiped.raft.ready().messages.find((m) => m.type === "voteResp")?.reject).toBe(true);
  const open = new TestNode("y", { storage: new MemoryStorage(), seed: 9, raft: { emptyNodeVotes: true } });
  open.raft.step(vote("y"));
  expect(open.raft.ready().messages.find((m) => m.type === "voteResp")?.reject).toBe(false);
});

// DESIGN.md (cluster ID): a fresh node that refuses to vote must not let a candidate claim it for its cluster either.
test("with emptyNodeVotes false a fresh node adopts a cluster ID only from a leader, never from a candidate", () => {
  const fresh = new TestNode("z", { storage: new MemoryStorage(), seed: 9, raft: { emptyNodeVotes: false, clusterId: null } });
  fresh.raft.step({ type: "vote", from: "b", to: "z", term: 5, cluster: "stray", index: 9, logTerm: 3, entries: [], commit: 0, commitTerm: 0, reject: false, rejectHint: 0, context: "" });
  expect(fresh.raft.clusterId).toBeNull();
  const rd = fresh.raft.ready();
  expect(rd.events.some((e) => e.kind === "clusterMismatch")).toBe(true);
  fresh.raft.advance(rd);
  fresh.raft.step({ type: "heartbeat", from: "a", to: "z", term: 6, cluster: "real", index: 0, logTerm: 0, entries: [], commit: 0, commitTerm: 0, reject: false, rejectHint: 0, context: "" });
  expect(fresh.raft.clusterId).toBe("real");
});

/**
 * Commit rules: majority replication (§5.3), only current-term entries are
 * committed by counting replicas (§5.4.2, the Figure 8 scenario), and the
 * no-op a leader appends at the start of its term (§8).
 */
import { describe, expect, test } from "bun:test";
import type { Message } from "../../src/raft/index.ts";
import { Network, logOf, text } from "./harness.ts";

describe("committing (§5.3)", () => {
  test("§5.3: with five voters an entry commits on the third copy, not before", () => {
    const net = new Network(["n1", "n2", "n3", "n4", "n5"]);
    net.elect("n1");
    const cutN3 = net.isolate("n3");
    net.isolate("n4");
    net.isolate("n5");
    const at = net.propose("n1", "x"); // on n1 and n2 only
    expect(net.raft("n1").log.committed).toBe(at.index - 1);
    cutN3();
    net.tick("n1"); // n3 answers a heartbeat and gets "x": three of five
    expect(net.raft("n1").log.committed).toBe(at.index);
    expect(net.node("n3").appliedData()).toEqual(["x"]);
    expect(net.node("n4").appliedData()).toEqual([]);
  });

  test("§5.3: committed entries are applied once, in log order, on every node; the commit index never goes back", () => {
    const net = new Network(["n1", "n2", "n3"]);
    net.elect("n1");
    const commits = new Map<string, number[]>();
    for (let i = 0; i < 20; i++) {
      if (i === 5) net.isolate("n2");
      if (i === 12) net.heal();
      net.propose("n1", `v${i}`);
      net.tickAll();
      for (const n of net.nodes.values()) commits.set(n.id, [...(commits.get(n.id) ?? []), n.raft.log.committed]);
    }
    const want = [...Array(20).keys()].map((i) => `v${i}`);
    for (const n of net.nodes.values()) {
      expect(n.appliedData()).toEqual(want);
      const idx = n.applied.map((e) => e.index);
      expect(idx).toEqual([...Array(idx.length).keys()].map((i) => i + 2));
      const c = commits.get(n.id)!;
      expect(c).toEqual([...c].sort((a, b) => a - b));
    }
  });
});

describe("the no-op at the start of a term (§8)", () => {
  test("§8: a new leader appends an empty entry of its term at once and commits it", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    const last = net.raft("n1").log.lastIndex();
    const noop = net.raft("n1").log.slice(last, last + 1, 1 << 20)[0]!;
    expect(noop).toMatchObject({ index: 2, term: 2, kind: "normal" });
    expect(noop.data.byteLength).toBe(0);
    for (const n of net.nodes.values()) expect(n.raft.log.committed).toBe(2);

    net.elect("n2");
    expect(net.raft("n2").term).toBe(3);
    const noop2 = net.raft("n2").log.slice(3, 4, 1 << 20)[0]!;
    expect(noop2).toMatchObject({ index: 3, term: 3, kind: "normal" });
    expect(noop2.data.byteLength).toBe(0);
    for (const n of net.nodes.values()) expect(n.raft.log.committed).toBe(3);
  });

  test("§5.4.2/§8: entries of an earlier term are committed indirectly by the new leader's no-op", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { checkQuorum: false } });
    net.elect("n1");
    // "x" reaches n2 but n1 never learns it, so it stays uncommitted in term 2.
    const lost = net.drop((m) => m.type === "appResp" && m.to === "n1");
    net.isolate("n3");
    net.propose("n1", "x");
    expect(net.raft("n2").log.lastIndex()).toBe(3);
    expect(net.raft("n1").log.committed).toBe(2);
    lost();
    net.heal();
    net.isolate("n1");
    net.elect("n2"); // term 3, with n3's vote
    expect(net.raft("n2").role).toBe("leader");
    // Committed by the term-3 no-op (index 4), not by counting copies of index 3.
    expect(net.raft("n2").log.committed).toBe(4);
    expect(net.node("n3").appliedData()).toEqual(["x"]);
  });
});

/**
 * Figure 8 (§5.4.2), step by step with five nodes. Index 1 is the bootstrap
 * configuration (term 1); index 2 the no-op of term 2.
 *  (a) s1 leads term 2 and writes "x" at index 3 (term 2) on itself only.
 *  (b) s1 is gone; s5 is elected in term 3 (s2, s3, s4) and writes its no-op
 *      3/3 on itself only.
 *  (c) s5 is gone, s1 is back and elected in term 4 (s2, s3). It replicates
 *      3/2 to s2 and s3, a majority, but its own term-4 no-op reaches nobody.
 *      Counting copies would now commit 3/2 ...
 *  (d) ... yet s1 is gone again and s5 is elected in term 5 (its last term 3
 *      beats 2), and overwrites index 3 everywhere with its 3/3.
 * So 3/2 must not be committed in (c): only an entry of the leader's own term
 * is committed by counting replicas.
 */
function figure8(unsafeCommit: boolean): { net: Network; commitAfterC: number } {
  const ids = ["s1", "s2", "s3", "s4", "s5"];
  const net = new Network(ids, {
    // The figure has no PreVote and no leases; one entry per append so that
    // the old-term entry can travel without the new-term one.
    raft: { preVote: false, checkQuorum: false, msgBytesMax: 1, unsafe: { commitOldTermByCount: unsafeCommit } },
  });
  net.elect("s1");
  for (const n of net.nodes.values()) expect(n.raft.log.committed).toBe(2);

  // (a)
  const a = net.drop((m) => m.from === "s1" && m.type === "app");
  net.propose("s1", "x");
  expect(logOf(net.node("s1"))).toEqual(["1/1", "2/2", "3/2"]);
  a();

  // (b)
  const b1 = net.isolate("s1");
  const b2 = net.drop((m) => m.from === "s5" && m.type === "app");
  net.elect("s5");
  expect(net.raft("s5").role).toBe("leader");
  expect(net.raft("s5").term).toBe(3);
  expect(logOf(net.node("s5"))).toEqual(["1/1", "2/2", "3/3"]);
  b1();
  b2();

  // (c)
  const c1 = net.isolate("s5");
  const c2 = net.isolate("s4");
  // The term-4 no-op is lost wherever it would be accepted (a follower
  // without index 3 rejects it, and that rejection makes s1 send 3/2 alone).
  const c3 = net.drop((m: Message) => m.from === "s1" && m.type === "app" && m.entries.some((e) => e.term === 4) && net.raft(m.to).log.matchTerm(m.index, m.logTerm));
  net.node("s1").restart(); // s1 still believed it led term 2
  net.elect("s1"); // term 3: s2 s3 voted for s5 -> no majority
  expect(net.raft("s1").role).toBe("candidate");
  net.elect("s1"); // term 4
  expect(net.raft("s1").role).toBe("leader");
  expect(net.raft("s1").term).toBe(4);
  expect(logOf(net.node("s1"))).toEqual(["1/1", "2/2", "3/2", "4/4"]);
  for (const id of ["s2", "s3"]) expect(logOf(net.node(id))).toEqual(["1/1", "2/2", "3/2"]);
  const st = net.raft("s1").status().progress;
  expect([st.get("s2")!.match, st.get("s3")!.match]).toEqual([3, 3]);
  const commitAfterC = net.raft("s1").log.committed;
  c1();
  c2();
  c3();

  // (d)
  net.isolate("s1");
  net.node("s5").restart(); // s5 still believed it led term 3
  net.elect("s5"); // term 4: s2 s3 voted for s1 -> no majority
  net.elect("s5"); // term 5
  expect(net.raft("s5").role).toBe("leader");
  expect(net.raft("s5").term).toBe(5);
  return { net, commitAfterC };
}

describe("Figure 8 (§5.4.2)", () => {
  test("§5.4.2 Figure 8: an old-term entry on a majority is not committed by counting, and is safely overwritten", () => {
    const { net, commitAfterC } = figure8(false);
    expect(commitAfterC).toBe(2);
    expect(net.node("s1").appliedData()).toEqual([]);
    // (d): s5 replaced 3/2 with its own 3/3 on the majority; nobody ever applied "x".
    for (const id of ["s2", "s3", "s4", "s5"]) {
      expect(logOf(net.node(id))).toEqual(["1/1", "2/2", "3/3", "4/5"]);
      expect(net.raft(id).log.committed).toBe(4);
      expect(net.node(id).appliedData()).toEqual([]);
    }
    // s1 comes back and takes the committed log without complaint.
    net.heal();
    net.tick("s5");
    expect(logOf(net.node("s1"))).toEqual(logOf(net.node("s5")));
    expect(net.node("s1").appliedData()).toEqual([]);
  });

  test("§5.4.2 Figure 8: with unsafe commitOldTermByCount the same script commits 3/2, and (d) then loses it", () => {
    const { net, commitAfterC } = figure8(true);
    expect(commitAfterC).toBe(3);
    // s1 applied "x" at index 3 ...
    const s1At3 = net.node("s1").applied.find((e) => e.index === 3)!;
    expect(s1At3.term).toBe(2);
    expect(text(s1At3)).toBe("x");
    // ... while the cluster committed a different entry at index 3: state machine safety is broken.
    for (const id of ["s2", "s3", "s4", "s5"]) {
      const at3 = net.node(id).applied.find((e) => e.index === 3)!;
      expect(at3.term).toBe(3);
      expect(at3.data.byteLength).toBe(0);
    }
  });
});

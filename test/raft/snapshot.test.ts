/**
 * Snapshots as the core sees them (§7, thesis §5): a follower behind the
 * compacted log is sent a snapshot (metadata in the core, bytes by the
 * driver); after it is installed replication resumes; a failed send goes
 * back to probing.
 */
import { describe, expect, test } from "bun:test";
import type { Entry } from "../../src/raft/index.ts";
import { Network, TestNode, bootstrapStorage, conf, logOf, msg } from "./harness.ts";

/** n3 misses ten entries, then n1 compacts its log past them. */
function lagBehindSnapshot(): { net: Network; snapAt: number; back: () => void } {
  const net = new Network(["n1", "n2", "n3"]);
  net.elect("n1");
  const back = net.isolate("n3");
  for (let i = 0; i < 10; i++) net.propose("n1", `v${i}`);
  const snapAt = net.compact("n1");
  expect(snapAt).toBe(12);
  expect(net.raft("n1").log.firstIndex()).toBe(13);
  return { net, snapAt, back };
}

function progressOf(net: Network, id: string) {
  return net.raft("n1").status().progress.get(id)!;
}

describe("snapshots (§7)", () => {
  test("§7: a follower behind the compacted log is sent a snapshot; once installed, replication resumes", () => {
    const { net, snapAt, back } = lagBehindSnapshot();
    back();
    net.clearLog();
    net.tick("n1");
    const snaps = net.sent((m) => m.type === "snap");
    expect(snaps.length).toBe(1);
    expect(snaps[0]!.to).toBe("n3");
    expect(snaps[0]!.snapshot).toEqual({ index: snapAt, term: 2, conf: conf(["n1", "n2", "n3"]) });
    // The driver installed it (the harness does so from the Ready) and n3 acknowledged.
    expect(net.node("n3").storage.snapshotMeta().index).toBe(snapAt);
    expect(net.raft("n3").log.firstIndex()).toBe(snapAt + 1);
    expect(net.raft("n3").log.committed).toBe(snapAt);
    expect(net.raft("n3").status().applied).toBe(snapAt);
    expect(progressOf(net, "n3")).toMatchObject({ state: "replicate", match: snapAt });

    net.propose("n1", "after");
    expect(net.node("n3").appliedData()).toEqual(["after"]);
    expect(logOf(net.node("n3"))).toEqual([`${snapAt + 1}/2`]);
  });

  test("§7: while a snapshot is in flight no appends go to that follower", () => {
    const { net, back } = lagBehindSnapshot();
    net.heal();
    net.drop((m) => m.type === "snap");
    net.tick("n1");
    expect(progressOf(net, "n3").state).toBe("snapshot");
    net.clearLog();
    net.propose("n1", "x");
    net.tick("n1", 3);
    expect(net.delivered.filter((m) => m.type === "app" && m.to === "n3")).toEqual([]);
    expect(net.dropped.filter((m) => m.type === "snap")).toEqual([]);
    back();
  });

  test("§7: reportSnapshot(failure) goes back to probe, and the snapshot is sent again after the next answer", () => {
    const { net, snapAt } = lagBehindSnapshot();
    net.heal();
    const lose = net.drop((m) => m.type === "snap");
    net.tick("n1");
    expect(net.dropped.filter((m) => m.type === "snap").length).toBe(1);
    expect(progressOf(net, "n3")).toMatchObject({ state: "snapshot" });

    net.raft("n1").reportSnapshot("n3", false);
    expect(progressOf(net, "n3")).toMatchObject({ state: "probe", next: progressOf(net, "n3").match + 1 });
    // Paused until n3 answers something: nothing goes out at once.
    expect(net.raft("n1").hasReady()).toBe(false);
    lose();
    net.clearLog();
    net.tick("n1");
    expect(net.sent((m) => m.type === "snap" && m.to === "n3").length).toBe(1);
    expect(net.node("n3").storage.snapshotMeta().index).toBe(snapAt);
    expect(progressOf(net, "n3").state).toBe("replicate");
  });

  test("§7: reportSnapshot(success) probes right after the snapshot index", () => {
    const { net, snapAt } = lagBehindSnapshot();
    net.heal();
    net.drop((m) => m.type === "snap"); // the driver sent it; the follower's answer is still to come
    net.tick("n1");
    net.raft("n1").reportSnapshot("n3", true);
    expect(progressOf(net, "n3")).toMatchObject({ state: "probe", next: snapAt + 1 });
  });

  test("§7: a follower ignores a snapshot that is not ahead of its commit index", () => {
    const n = new TestNode("n2", { storage: bootstrapStorage(["n1", "n2", "n3"]), seed: 1, raft: { applied: 1 } });
    const ents: Entry[] = [2, 3, 4].map((index) => ({ index, term: 2, kind: "normal", data: new Uint8Array([index]) }));
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: ents, commit: 4 }));
    n.processReady();
    n.raft.step(msg({ type: "snap", from: "n1", to: "n2", term: 2, snapshot: { index: 3, term: 2, conf: conf(["n1", "n2", "n3"]) } }));
    const rd = n.raft.ready();
    expect(rd.snapshot).toBeUndefined();
    expect(rd.messages.map((m) => [m.type, m.index])).toEqual([["appResp", 4]]);
    n.raft.advance(rd);
    expect(n.raft.log.lastIndex()).toBe(4);
  });

  test("§7: a snapshot whose last entry the follower already holds only moves its commit index", () => {
    const n = new TestNode("n2", { storage: bootstrapStorage(["n1", "n2", "n3"]), seed: 1, raft: { applied: 1 } });
    const ents: Entry[] = [2, 3, 4, 5].map((index) => ({ index, term: 2, kind: "normal", data: new Uint8Array([index]) }));
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: ents, commit: 1 }));
    n.processReady();
    n.raft.step(msg({ type: "snap", from: "n1", to: "n2", term: 2, snapshot: { index: 4, term: 2, conf: conf(["n1", "n2", "n3"]) } }));
    const rd = n.raft.ready();
    expect(rd.snapshot).toBeUndefined();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2, 3, 4]);
    n.raft.advance(rd);
    expect(n.raft.log.lastIndex()).toBe(5);
  });

  test("§7: a follower with a conflicting log replaces it with the snapshot", () => {
    const n = new TestNode("n2", { storage: bootstrapStorage(["n1", "n2", "n3"]), seed: 1, raft: { applied: 1 } });
    const ents: Entry[] = [2, 3].map((index) => ({ index, term: 2, kind: "normal", data: new Uint8Array([index]) }));
    n.raft.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: ents, commit: 1 }));
    n.processReady();
    n.raft.step(msg({ type: "snap", from: "n3", to: "n2", term: 3, snapshot: { index: 3, term: 3, conf: conf(["n1", "n2", "n3"]) } }));
    const rd = n.raft.ready();
    expect(rd.snapshot).toEqual({ index: 3, term: 3, conf: conf(["n1", "n2", "n3"]) });
    expect(rd.messages.map((m) => [m.type, m.to, m.index])).toEqual([["appResp", "n3", 3]]);
    n.storage.applySnapshot(rd.snapshot!);
    n.raft.advance(rd);
    expect(n.raft.log.firstIndex()).toBe(4);
    expect(n.raft.log.lastIndex()).toBe(3);
    expect(n.raft.log.term(3)).toBe(3);
    expect(n.raft.status()).toMatchObject({ commit: 3, applied: 3 });
  });

  test("§7: a node restarted from a compacted log campaigns, leads and replicates after the snapshot", () => {
    const { net, snapAt } = lagBehindSnapshot();
    net.heal();
    net.tick("n1"); // n3 installs the snapshot
    net.compact("n2");
    for (const id of ["n1", "n2", "n3"]) net.node(id).restart();
    const l = net.tickUntilLeader();
    expect(net.raft(l).log.firstIndex()).toBe(snapAt + 1);
    net.propose(l, "z");
    for (const id of ["n1", "n2", "n3"]) expect(net.node(id).appliedData().at(-1)).toBe("z");
  });
});

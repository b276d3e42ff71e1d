/**
 * How a node learns it was removed (RemovalCheck, removalProof) and whose
 * data a data directory holds (dataDirProblem): the pure parts, on plain
 * values and a real store in a fresh temp dir.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataDirFacts, dataDirProblem, DataDirRefusedError } from "../../src/node/datadir.ts";
import { RemovalCheck, removalProof, type MemberView } from "../../src/node/membership.ts";
import { RaftStore } from "../../src/storage/store.ts";

const view = (o: Partial<MemberView> = {}): MemberView => ({
  self: "n4",
  clusterId: "c1",
  members: ["n1", "n2", "n3", "n4"],
  leader: false,
  removed: false,
  silentMs: Infinity,
  lastIndex: 200,
  ...o,
});

test("a peer of the same cluster whose applied configuration lacks this node, at or past this node's last index, proves the removal", () => {
  expect(removalProof({ empty: false, clusterId: "c1", applied: 230, members: ["n1", "n2", "n3"] }, view())).toBe(230);
  expect(removalProof({ empty: false, clusterId: "c1", applied: 200, members: ["n1", "n2", "n3"] }, view())).toBe(200);
});

test("no proof: the peer lists this node, is behind this node's log, is of another cluster, or answers in the old shape", () => {
  expect(removalProof({ empty: false, clusterId: "c1", applied: 230, members: ["n1", "n4"] }, view())).toBeNull();
  expect(removalProof({ empty: false, clusterId: "c1", applied: 199, members: ["n1", "n2"] }, view())).toBeNull();
  expect(removalProof({ empty: false, clusterId: "c2", applied: 230, members: ["n1", "n2"] }, view())).toBeNull();
  expect(removalProof({ empty: false, clusterId: "c1" }, view())).toBeNull();
  expect(removalProof({ empty: false, clusterId: "c1", applied: 230, members: [] }, view())).toBeNull();
  expect(removalProof(null, view())).toBeNull();
  expect(removalProof({ empty: false, clusterId: "c1", applied: 230, members: ["n1"] }, view({ clusterId: null }))).toBeNull();
});

test("RemovalCheck asks only when a member has not heard from a leader for everyMs, at most once per everyMs", async () => {
  const asked: string[] = [];
  let v = view({ silentMs: 100 });
  const removed: { from: string; applied: number }[] = [];
  const check = new RemovalCheck({
    everyMs: 500,
    ask: async (peer) => {
      asked.push(peer);
      return { empty: false, clusterId: "c1", applied: 250, members: ["n1", "n2", "n3"] };
    },
    view: () => v,
    onRemoved: (e) => removed.push(e),
  });
  check.tick(1000);
  expect(asked).toEqual([]); // heard from the leader recently
  v = view({ leader: true });
  check.tick(1000);
  expect(asked).toEqual([]); // a leader never asks
  v = view({ members: ["n1", "n2", "n3"] });
  check.tick(1000);
  expect(asked).toEqual([]); // not a member by its own configuration (a joiner replaying history)
  v = view();
  check.tick(1000);
  expect(asked).toEqual(["n1", "n2", "n3"]);
  check.tick(1200);
  expect(asked.length).toBe(3); // not again before everyMs
  await Promise.resolve();
  await Promise.resolve();
  expect(removed[0]).toEqual({ from: "n1", applied: 250 });
});

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

test("a data directory of another node, another cluster or a removed node is refused with what to do; an empty one is fine", () => {
  dir = mkdtempSync(join(tmpdir(), "cairn-datadir-"));
  const store = RaftStore.open({ dir });
  try {
    const want = { id: "n1", cluster: "store-42", configPath: "/etc/cairn/cluster.json" };
    expect(dataDirProblem(dataDirFacts(store, dir), want)).toBeNull();
    store.setNodeId("n1");
    store.setClusterId("c-123");
    store.setClusterName("store-41");
    const other = dataDirProblem(dataDirFacts(store, dir), want);
    expect(other).toBeInstanceOf(DataDirRefusedError);
    expect(other!.problem).toBe("cluster");
    expect(other!.message).toContain(`holds data of cluster "store-41" (id c-123), but the cluster file /etc/cairn/cluster.json is for cluster "store-42"`);
    expect(dataDirProblem(dataDirFacts(store, dir), { ...want, id: "n2" })!.problem).toBe("node");
    expect(dataDirProblem(dataDirFacts(store, dir), { ...want, cluster: "store-41" })).toBeNull();
    store.setRemovedAt(77);
    const removed = dataDirProblem(dataDirFacts(store, dir), { ...want, cluster: "store-41" });
    expect(removed!.problem).toBe("removed");
    expect(removed!.message).toContain("node n1 was removed from cluster \"store-41\" (id c-123) (by log index 77)");
    expect(removed!.message).toContain("start it with an empty data directory");
    store.clearRemovedAt();
    expect(store.removedAt()).toBeNull();
  } finally {
    store.close();
  }
});

/** Founding at run time (src/node/founding.ts) over a fake store and fake probes: who founds, who joins, and a full disk while founding. */
import { afterEach, expect, test } from "bun:test";
import type { ClusterConfig } from "../../src/discovery/load.ts";
import { parseClusterText } from "../../src/discovery/load.ts";
import type { ProbeAnswer } from "../../src/node/bootstrap.ts";
import { Founding, Waiting } from "../../src/node/founding.ts";
import { DiskFullError } from "../../src/platform/sqlite.ts";
import type { ConfState, Entry, HardState } from "../../src/raft/index.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { waitFor } from "../../harness/ports.ts";

function config(): ClusterConfig {
  const nodes = [1, 2, 3].map((i) => ({ id: `n${i}`, peer: `10.0.0.${i}:7400`, api: `https://10.0.0.${i}:7401` }));
  const r = parseClusterText(JSON.stringify({ cluster: "c", nodes, founders: ["n1", "n2", "n3"] }), "/etc/cairn/cluster.json");
  if (!r.ok) throw r.error;
  return r.config;
}

interface Rig {
  founding: Founding;
  waiting: Waiting;
  persisted: { entries: readonly Entry[]; hardState: HardState; clusterId: string }[];
  applied: { entries: readonly Entry[]; conf: ConfState }[];
  probes: string[];
  joined: number;
  founded: string[];
  diskFull: { value: boolean };
}

const rigs: Rig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) r.founding.stop();
});

function rig(self: string, answer: (peer: string) => ProbeAnswer | null): Rig {
  const { log } = memoryLogger("error");
  const r = { persisted: [], applied: [], probes: [], joined: 0, founded: [], diskFull: { value: false } } as unknown as Rig;
  r.waiting = new Waiting(log);
  r.founding = new Founding({
    id: self,
    log,
    store: {
      path: "/data/raft.db",
      persist: (w) => {
        if (r.diskFull.value) throw new DiskFullError("/data/raft.db");
        r.persisted.push(w);
      },
    },
    apply: (entries, conf) => void r.applied.push({ entries, conf }),
    config,
    probe: (peer) => {
      r.probes.push(peer);
      const a = answer(peer);
      return a ? Promise.resolve(a) : Promise.reject(new Error("unreachable"));
    },
    settled: () => r.joined > 0 || r.founded.length > 0,
    waiting: r.waiting,
    startJoining: () => void r.joined++,
    onFounded: (id) => void r.founded.push(id),
    guarded: (fn) => fn(),
    probeEveryMs: 5,
  });
  rigs.push(r);
  return r;
}

test("a node that is not the designated founder joins at once, probing nobody, and says why it waits", () => {
  const r = rig("n2", () => ({ empty: true, clusterId: null }));
  r.founding.start();
  expect(r.joined).toBe(1);
  expect(r.probes).toEqual([]);
  expect(r.persisted).toEqual([]);
  expect(r.waiting.reason).toContain("not the designated founder (n1)");
});

test("the designated founder waits until every other founder answered empty, then writes entry 1 durably, applies it, and founds once", async () => {
  let n3Up = false;
  const r = rig("n1", (peer) => (peer === "n3" && !n3Up ? null : { empty: true, clusterId: null }));
  r.founding.start();
  await waitFor("n1 to say it waits for n3", () => r.waiting.reason.includes("waiting for founders n3"), 5000, 5);
  expect(r.persisted).toEqual([]);
  n3Up = true;
  await waitFor("the cluster founded", () => r.founded.length > 0, 5000, 5);
  expect(r.persisted).toHaveLength(1);
  const w = r.persisted[0]!;
  expect(w.entries.map((e) => e.index)).toEqual([1]);
  expect(w.hardState).toEqual({ term: 1, vote: "", commit: 1 });
  expect(r.founded).toEqual([w.clusterId]);
  expect(r.applied).toHaveLength(1);
  expect(r.applied[0]!.conf.voters).toEqual(["n1"]);
  const probesAtFounding = r.probes.length;
  await Bun.sleep(30); // several probe periods: an absence (no probe after founding) cannot be polled for
  expect(r.probes.length).toBe(probesAtFounding);
  expect(r.joined).toBe(0);
});

test("the designated founder joins instead when another founder already has data", async () => {
  const r = rig("n1", (peer) => (peer === "n2" ? { empty: false, clusterId: "old" } : { empty: true, clusterId: null }));
  r.founding.start();
  await waitFor("n1 to join", () => r.joined > 0, 5000, 5);
  expect(r.persisted).toEqual([]);
  expect(r.founded).toEqual([]);
  expect(r.waiting.reason).toContain("founder n2 already has data (cluster old)");
});

test("a full disk while founding is a reason to wait, not a crash; the next probe round founds once there is space", async () => {
  const r = rig("n1", () => ({ empty: true, clusterId: null }));
  r.diskFull.value = true;
  r.founding.start();
  await waitFor("the disk-full reason", () => r.waiting.reason.includes("cannot found the cluster: the disk holding /data/raft.db is full"), 5000, 5);
  expect(r.founded).toEqual([]);
  r.diskFull.value = false;
  await waitFor("the cluster founded", () => r.founded.length > 0, 5000, 5);
  expect(r.persisted).toHaveLength(1);
});

/**
 * A mixed cluster: n1 and n2 are the built (Bun) binary, n3 runs the same
 * sources under Deno (`deno run -A src/main.ts serve ...`, node:sqlite). n3
 * joins, becomes a voter, replicates both ways, and survives kill -9.
 */
import { afterEach, expect, test } from "bun:test";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster } from "./harness.ts";

const IDS = ["n1", "n2", "n3"];

let c: E2ECluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

/** Every node's local copy holds exactly `acked` (index -> data), in the same order. */
async function expectSameFeed(cl: E2ECluster, acked: Map<number, unknown>): Promise<void> {
  const feeds = await Promise.all(
    IDS.map((id) =>
      waitFor(`${id} caught up`, async () => {
        const f = await cl.feed(id);
        return f.length >= acked.size ? f : undefined;
      }, 30_000),
    ),
  );
  for (const f of feeds) {
    expect(f.map((ch) => ch.index)).toEqual(feeds[0]!.map((ch) => ch.index));
    expect(f.map((ch) => JSON.stringify(ch.data))).toEqual(feeds[0]!.map((ch) => JSON.stringify(ch.data)));
    expect(f.length).toBe(acked.size);
    for (const [index, data] of acked) expect(f.find((ch) => ch.index === index)?.data).toEqual(data);
  }
}

test("a Deno node joins a cluster of Bun binaries, becomes a voter, replicates both ways and survives kill -9", async () => {
  // Deno starts slower than the compiled binary (it compiles the sources): the default timings.
  c = await E2ECluster.init(3, (f) => {
    f.raft = { heartbeatMs: 100, electionMs: 1000 };
  });
  c.start("n1");
  c.start("n2");
  c.start("n3", { runtime: "deno" });
  await c.waitVoters(3, 60_000);
  const leader = await c.leader();
  const st3 = await c.status("n3");
  expect(st3.id).toBe("n3");
  expect(st3.leader?.id).toBe(leader);
  expect(st3.clusterId).toBe((await c.status("n1")).clusterId);
  expect(st3.members.find((m: { id: string }) => m.id === "n3")?.role).toBe("voter");
  // The process is the deno binary running the sources, not dist/cairn.
  expect(c.procs.get("n3")!.child.spawnfile).toContain("deno");

  const acked = new Map<number, unknown>();
  const post = async (id: string, data: unknown) => {
    const r = await c!.post(id, data, { tags: ["deno"] });
    expect(r.status).toBe(201);
    acked.set(r.body.index, data);
    return r.body.index as number;
  };

  // Written via a Bun node, readable on the Deno node (linearizable and local).
  const i1 = await post("n1", { via: "n1", runtime: "bun" });
  const r1 = await c.json("n3", `/changes/${i1}`);
  expect(r1.status).toBe(200);
  expect(r1.body.data).toEqual({ via: "n1", runtime: "bun" });

  // Written via the Deno node (forwarded to the leader unless it is the leader), readable on n1.
  const i3 = await post("n3", { via: "n3", runtime: "deno" });
  const r3 = await c.json("n1", `/changes/${i3}`);
  expect(r3.status).toBe(200);
  expect(r3.body.data).toEqual({ via: "n3", runtime: "deno" });

  // Key-value through Deno, read through Bun, and the other way.
  const put = await c.json("n3", "/kv/runtime%2Fdeno", { method: "PUT", body: "from deno", headers: { "content-type": "text/plain" } });
  expect([200, 201]).toContain(put.status);
  const got = await c.get("n2", "/kv/runtime%2Fdeno");
  expect(got.status).toBe(200);
  expect(await got.text()).toBe("from deno");

  for (let i = 0; i < 10; i++) await post(IDS[i % 3]!, { round: 1, i });
  await expectSameFeed(c, feedOnly(acked, await c.feed("n1")));

  // kill -9 of the Deno node: the Bun nodes go on; it restarts from its SQLite file and catches up.
  await c.signal("n3", "SIGKILL");
  for (let i = 0; i < 10; i++) await post(IDS[i % 2]!, { round: 2, i });
  c.start("n3", { runtime: "deno" });
  await waitFor("n3 back with a leader", async () => (await c!.status("n3"))?.leader?.id, 60_000, 100);
  for (let i = 0; i < 5; i++) await post("n3", { round: 3, i });
  await expectSameFeed(c, feedOnly(acked, await c.feed("n1")));

  // Leadership handed to the Deno node: writes through the Bun nodes are forwarded to it.
  const leaderNow = await c.leader();
  const tr = await c.json(leaderNow, "/admin/leader", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ to: "n3" }) });
  if (leaderNow !== "n3") expect(tr.status).toBe(200);
  expect(await c.leader(30_000)).toBe("n3");
  for (let i = 0; i < 5; i++) await post(IDS[i % 3]!, { round: 4, i });

  // kill -9 of the Deno leader: the Bun nodes elect one of them, writes go on, n3 restarts and catches up.
  await c.signal("n3", "SIGKILL");
  const next = await c.leader(30_000);
  expect(["n1", "n2"]).toContain(next);
  await waitFor("a write after the Deno leader's death", async () => (await c!.post("n2", { probe: true })).status === 201, 30_000, 20);
  for (let i = 0; i < 5; i++) await post(IDS[i % 2]!, { round: 5, i });
  c.start("n3", { runtime: "deno" });
  await waitFor("n3 back with a leader", async () => (await c!.status("n3"))?.leader?.id, 60_000, 100);
  await expectSameFeed(c, feedOnly(acked, await c.feed("n1")));
  expect((await c.status("n3")).members.find((m: { id: string }) => m.id === "n3")?.role).toBe("voter");
}, 180_000);

/**
 * `acked` plus the other changes the feed holds (the key-value write, probes): the full expected
 * feed is taken from n1, checked to contain every acknowledged change at its index.
 */
function feedOnly(acked: Map<number, unknown>, feed: { index: number; data: any }[]): Map<number, unknown> {
  const all = new Map<number, unknown>();
  for (const ch of feed) all.set(ch.index, ch.data);
  for (const [index, data] of acked) expect(all.get(index)).toEqual(data);
  return all;
}

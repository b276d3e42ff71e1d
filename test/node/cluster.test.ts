import { afterEach, expect, test } from "bun:test";
import { inprocCluster, waitStableVoters, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

test("three empty nodes found one cluster: the first founder, then the others join as voters", async () => {
  c = await inprocCluster(["n1", "n2", "n3"]);
  await Promise.all(["n1", "n2", "n3"].map((id) => c!.start(id)));
  const leader = await c.leader();
  expect(leader.id).toBe("n1");
  await waitStableVoters(leader, 3);
  const out = await leader.propose({ op: "changes", items: [{ data: { hello: 1 }, tags: ["a"] }], ts: Date.now() });
  expect(out.kind).toBe("applied");
  for (const n of c.nodes.values()) {
    await waitFor(`${n.id} applies the change`, () => n.fsm.feedState().last >= 1);
    expect(n.fsm.getChange(1)?.data).toEqual({ hello: 1 });
  }
  const clusterIds = new Set([...c.nodes.values()].map((n) => n.status().clusterId));
  expect(clusterIds.size).toBe(1);
}, 30_000);

test("a write to a follower is forwarded to the leader; a linearizable read on a follower sees it", async () => {
  c = await inprocCluster(["n1", "n2", "n3"]);
  await Promise.all(["n1", "n2", "n3"].map((id) => c!.start(id)));
  const leader = await c.leader();
  await waitStableVoters(leader, 3);
  const follower = [...c.nodes.values()].find((n) => n !== leader)!;
  const out = await follower.propose({ op: "put", key: "k", value: new TextEncoder().encode("v"), contentType: "text/plain", ts: Date.now() });
  expect(out.kind).toBe("applied");
  const other = [...c.nodes.values()].find((n) => n !== leader && n !== follower)!;
  await other.readBarrier();
  expect(new TextDecoder().decode(other.fsm.get("k")!.value)).toBe("v");
}, 30_000);

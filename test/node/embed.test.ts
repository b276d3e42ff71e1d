/**
 * An embedder's own state machine (examples/queue-fsm.ts) on a real 3-node
 * cluster in this process: proposals through any node return its results,
 * every node holds the same tables, and a node that falls behind the
 * compacted log gets the embedder's tables in a checkpoint.
 */
import { afterEach, expect, test } from "bun:test";
import { encode, QueueFsm, type QueueResult } from "../../examples/queue-fsm.ts";
import { openDatabase } from "../../src/platform/sqlite.ts";
import { inprocCluster, waitStableVoters, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";
import { join } from "node:path";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

function jobs(dir: string): string[] {
  const db = openDatabase(join(dir, "cairn.db"));
  try {
    return db.prepare("SELECT id, body, taken_by FROM jobs ORDER BY id").all().map((r) => `${r.id}:${r.body}:${r.taken_by ?? "-"}`);
  } finally {
    db.close();
  }
}

test("an embedder's state machine replicates; results come back through any node; checkpoints carry its tables", async () => {
  c = await inprocCluster(["n1", "n2", "n3"], {
    node: { fsm: undefined, checkpoints: { everyEntries: 0, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 2, compactEveryEntries: 200 } },
    fsmFactory: () => new QueueFsm(),
  });
  await Promise.all(["n1", "n2", "n3"].map((id) => c!.start(id)));
  const leader = await c.leader();
  await waitStableVoters(leader, 3);
  const follower = [...c.nodes.values()].find((n) => n !== leader)!;
  const pushed = await follower.proposeData(encode({ push: "first" }));
  expect(pushed.kind).toBe("applied");
  const firstId = (pushed as { result: unknown }).result as QueueResult;
  expect(firstId).toMatchObject({ pushed: expect.any(Number) });
  const down = [...c.nodes.keys()].find((id) => id !== leader.id && id !== follower.id)!;
  await c.stop(down);
  // Until the leader sees it silent it keeps the log the stopped node still needs.
  await waitFor(`the leader sees ${down} silent`, () => (leader.status().members.find((m) => m.id === down)?.lastContactMs ?? 0) > 1000, 10_000);
  // One at a time: more appends than the transport queues for a silent peer (1024), so catching up needs the checkpoint.
  for (let i = 0; i < 1500; i++) await leader.proposeData(encode({ push: `job${i}` }));
  const taken = (await leader.proposeData(encode({ take: "w1" }))) as { result: QueueResult };
  expect(taken.result).toEqual({ job: { id: (firstId as { pushed: number }).pushed, body: "first" } });
  await waitFor("a compacted log", () => leader.status().index.first > 1200, 20_000);
  const back = await c.start(down);
  await waitFor(`${down} catches up`, () => back.status().index.applied >= leader.status().index.applied, 20_000);
  expect(c.logs.some((l) => l.includes(`"node":"${down}"`) && l.includes("installed checkpoint"))).toBe(true);
  const bad = (await leader.proposeData(new TextEncoder().encode("{"))) as { result: QueueResult };
  expect(bad.result).toEqual({ error: "not JSON" });
  await waitFor("every node applied everything", () => [...c!.nodes.values()].every((n) => n.status().index.applied === leader.status().index.applied));
  const want = jobs(join(c.dir, leader.id));
  expect(want.length).toBe(1501);
  for (const id of c.nodes.keys()) expect(jobs(join(c.dir, id))).toEqual(want);
}, 60_000);

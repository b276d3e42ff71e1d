import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { inprocCluster, waitStableVoters, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const small = { checkpoints: { everyEntries: 40, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 5 }, transfer: { chunkBytes: 4096, windowChunks: 2 } };

test("a follower kept down while the log is compacted catches up from a checkpoint sent in chunks", async () => {
  c = await inprocCluster(["n1", "n2", "n3"], { node: small });
  await Promise.all(["n1", "n2", "n3"].map((id) => c!.start(id)));
  const leader = await c.leader();
  await waitStableVoters(leader, 3);
  const down = [...c.nodes.keys()].find((id) => id !== leader.id)!;
  await c.stop(down);
  for (let i = 0; i < 200; i++) {
    await leader.propose({ op: "put", key: `k${i % 50}`, value: new TextEncoder().encode("x".repeat(200) + i), contentType: "text/plain", ts: Date.now() });
  }
  await waitFor("a checkpoint and a compacted log", () => leader.status().index.first > 100, 20_000);
  expect(leader.checkpoints().length).toBeGreaterThan(0);
  const back = await c.start(down);
  await waitFor(`${down} installs a checkpoint and catches up`, () => back.status().index.applied >= leader.status().index.commit - 1 && back.fsm.feedState().last === leader.fsm.feedState().last, 20_000);
  expect(c.logs.some((l) => l.includes(`"node":"${down}"`) && l.includes("installed checkpoint"))).toBe(true);
  for (let i = 0; i < 50; i++) expect(back.fsm.get(`k${i}`)?.version).toBe(leader.fsm.get(`k${i}`)?.version);
  // Replication goes on normally afterwards.
  const out = await leader.propose({ op: "changes", items: [{ data: "after", tags: [] }], ts: Date.now() });
  expect(out.kind).toBe("applied");
  await waitFor(`${down} gets the next change`, () => back.fsm.feedState().last === leader.fsm.feedState().last);
  const incoming = join(c.dir, down, "checkpoints", "incoming");
  expect(existsSync(incoming) ? readdirSync(incoming).filter((f) => f.endsWith(".part")) : []).toEqual([]);
}, 60_000);

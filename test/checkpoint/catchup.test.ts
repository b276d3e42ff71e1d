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

/** The log compacted every 40 entries, and no checkpoint built by the node's own policy: only when one is needed. */
const small = { checkpoints: { everyEntries: 0, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 5, compactEveryEntries: 40 }, transfer: { chunkBytes: 4096, windowChunks: 2 } };

test("a follower kept down while the log is compacted (with no checkpoint built) catches up from a checkpoint built when it needs one and sent in chunks", async () => {
  c = await inprocCluster(["n1", "n2", "n3"], { node: small });
  await Promise.all(["n1", "n2", "n3"].map((id) => c!.start(id)));
  const leader = await c.leader();
  await waitStableVoters(leader, 3);
  const down = [...c.nodes.keys()].find((id) => id !== leader.id)!;
  await c.stop(down);
  for (let i = 0; i < 200; i++) {
    await leader.propose({ op: "put", key: `k${i % 50}`, value: new TextEncoder().encode("x".repeat(200) + i), contentType: "text/plain", ts: Date.now() });
  }
  await waitFor("a compacted log", () => leader.status().index.first > 100, 20_000);
  // Compaction copied nothing: no checkpoint file until a follower needs one.
  expect(leader.checkpoints()).toEqual([]);
  const back = await c.start(down);
  await waitFor(`${down} installs a checkpoint and catches up`, () => back.status().index.applied >= leader.status().index.commit - 1 && back.fsm.feedState().last === leader.fsm.feedState().last, 20_000);
  expect(c.logs.some((l) => l.includes(`"node":"${down}"`) && l.includes("installed checkpoint"))).toBe(true);
  expect(c.logs.some((l) => l.includes(`"node":"${leader.id}"`) && l.includes(`building a checkpoint now: ${down} is behind the compacted log`))).toBe(true);
  expect(leader.metricsText()).toContain('cairn_checkpoints_built_total{reason="peer"} 1');
  for (let i = 0; i < 50; i++) expect(back.fsm.get(`k${i}`)?.version).toBe(leader.fsm.get(`k${i}`)?.version);
  // Replication goes on normally afterwards.
  const out = await leader.propose({ op: "changes", items: [{ data: "after", tags: [] }], ts: Date.now() });
  expect(out.kind).toBe("applied");
  await waitFor(`${down} gets the next change`, () => back.fsm.feedState().last === leader.fsm.feedState().last);
  const incoming = join(c.dir, down, "checkpoints", "incoming");
  expect(existsSync(incoming) ? readdirSync(incoming).filter((f) => f.endsWith(".part")) : []).toEqual([]);
}, 60_000);

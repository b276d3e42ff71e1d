/**
 * Log compaction without checkpoint copies (issue 11), against real
 * processes of dist/cairn (TLS API, mutual TLS between peers): the log is
 * compacted up to what is applied with no checkpoint built; a follower far
 * behind the compacted log start still catches up, from a checkpoint built
 * when it needs one; and under writes the number of checkpoint builds does
 * not grow with the writes while compactions go on.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { messages } from "./checkpoint-helpers.ts";
import { E2ECluster } from "./harness.ts";

let c: E2ECluster | undefined;
afterEach(async () => {
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, "compaction"));
  await c?.close();
  c = undefined;
});

const ARGS = ["--compact-every", "100", "--checkpoint-trailing", "10"];

/** A counter from GET /metrics, summed over its labels. */
async function metric(cl: E2ECluster, id: string, name: string): Promise<number> {
  const text = await (await cl.get(id, "/metrics")).text();
  let sum = 0;
  for (const l of text.split("\n")) if (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) sum += Number(l.slice(l.lastIndexOf(" ") + 1));
  return sum;
}

async function checkpointCount(cl: E2ECluster, id: string): Promise<number> {
  return ((await cl.json(id, "/checkpoints")).body.checkpoints as unknown[]).length;
}

test("the log is compacted with no checkpoint built; a follower far behind the log start catches up from one built on demand; more writes build no more", async () => {
  c = await E2ECluster.init(3);
  const cl = c;
  const ids = ["n1", "n2", "n3"];
  for (const id of ids) cl.start(id, { args: ARGS });
  await cl.waitVoters(3);
  const leader = await cl.leader();
  const down = ids.find((id) => id !== leader)!;
  const up = ids.filter((id) => id !== down);
  expect(await cl.stop(down)).toBe(0);

  // One at a time: more messages than the leader's send queue to the stopped node holds (1024),
  // so the node cannot catch up from that queue, only from the log or a checkpoint.
  for (let i = 0; i < 1500; i++) expect((await cl.post(leader, { i }, { tags: ["t"] })).status).toBe(201);
  await waitFor("the leader's log compacted far past the stopped follower", async () => (await cl.status(leader)).index.first > 1000, 30_000, 100);
  for (const id of up) {
    expect(await checkpointCount(cl, id)).toBe(0);
    expect(await metric(cl, id, "cairn_checkpoints_built_total")).toBe(0);
  }
  expect(await metric(cl, leader, "cairn_log_compactions_total")).toBeGreaterThan(0);

  // Far behind the log start: the leader builds a checkpoint for it, sends it, and it catches up.
  cl.start(down, { args: ARGS });
  await cl.waitForLog(down, "an installed checkpoint", (l) => (l.msg ?? "").startsWith("installed checkpoint ckpt-"), 60_000);
  expect(messages(cl, leader).some((m) => m.startsWith(`building a checkpoint now: ${down} is behind the compacted log`))).toBe(true);
  await waitFor(`${down} to catch up`, async () => (await cl.status(down)).feed.last === (await cl.status(leader)).feed.last, 30_000, 100);
  const built = await metric(cl, leader, "cairn_checkpoints_built_total");
  expect(built).toBe(1);
  const compactions = await Promise.all(ids.map((id) => metric(cl, id, "cairn_log_compactions_total")));
  const lastBefore = (await cl.status(leader)).index.last;

  // Under writes: every node compacts its log past everything written before, and builds nothing.
  let next = 0;
  const writer = async () => {
    for (let i = next++; i < 2000; i = next++) expect((await cl.post(leader, { more: i })).status).toBe(201);
  };
  await Promise.all(Array.from({ length: 8 }, writer));
  for (const id of ids) {
    await waitFor(`${id} to compact past index ${lastBefore}`, async () => (await cl.status(id)).index.first > lastBefore, 30_000, 100);
  }
  for (const [k, id] of ids.entries()) {
    expect(await metric(cl, id, "cairn_log_compactions_total")).toBeGreaterThan(compactions[k]!);
    expect(await metric(cl, id, "cairn_checkpoints_built_total")).toBe(id === leader ? built : 0);
  }
  expect(await checkpointCount(cl, leader)).toBe(1);
  // The follower that installed the checkpoint has the same feed as the leader.
  await waitFor(`${down} to have every change`, async () => (await cl.status(down)).feed.last === (await cl.status(leader)).feed.last, 30_000, 100);
  expect(JSON.stringify((await cl.json(down, "/changes?since=1400&limit=1000")).body.changes)).toBe(JSON.stringify((await cl.json(leader, "/changes?since=1400&limit=1000")).body.changes));
}, 180_000);

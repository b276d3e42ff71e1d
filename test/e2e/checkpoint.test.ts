/**
 * Checkpoints against real processes of dist/cairn (issues 5 and 11): a
 * cluster with tens of megabytes compacts its log without building a
 * checkpoint; a follower kept down meanwhile gets one built when it needs
 * it, and a new node added to the file catches up from a checkpoint streamed
 * in chunks; a transfer cut by kill -9 of the receiver resumes from its
 * partial file; kill -9 during a checkpoint build leaves nothing partial in use.
 */
import { afterEach, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { filesIn, messages, partBytes, stateOf, writeBulk } from "./checkpoint-helpers.ts";
import { E2ECluster, Writer, type ClusterFileNode } from "./harness.ts";

let c: E2ECluster | undefined;
let w: Writer | undefined;
let testNo = 0;
afterEach(async () => {
  await w?.stop(0);
  w = undefined;
  testNo++;
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, `checkpoint-${testNo}`));
  await c?.close();
  c = undefined;
});

interface Ckpt {
  id: string;
  index: number;
  bytes: number;
  sha256: string;
  feedLast: number;
}

const MiB = 1 << 20;

/** Small chunks and a small window so that a 30 MB transfer takes long enough to be cut. */
const ARGS = ["--compact-every", "100", "--checkpoint-trailing", "10", "--checkpoint-keep", "2", "--transfer-chunk-bytes", "64KiB", "--transfer-window", "2"];

async function checkpoints(cl: E2ECluster, id: string): Promise<Ckpt[]> {
  return (await cl.json(id, "/checkpoints")).body.checkpoints as Ckpt[];
}

/** Waits until `id` has applied what the leader has, then compares keys and feed. */
async function expectSameState(cl: E2ECluster, id: string, leader: string): Promise<void> {
  await waitFor(`${id} to catch up with ${leader}`, async () => {
    const [a, b] = await Promise.all([cl.status(id), cl.status(leader)]);
    return a.feed.last === b.feed.last && a.index.applied >= b.index.commit - 5;
  }, 60_000, 100);
  const [got, want] = await Promise.all([stateOf(cl, id), stateOf(cl, leader)]);
  expect(got.keyCount).toBe(want.keyCount);
  expect(createHash("sha256").update(got.keys).digest("hex")).toBe(createHash("sha256").update(want.keys).digest("hex"));
  expect(got.feed).toBe(want.feed);
}

test("30 MB: the log is compacted with no checkpoint built; a follower kept down gets one built for it, and a new node catches up from one; kill -9 mid-transfer resumes where it stopped", async () => {
  c = await E2ECluster.init(4);
  const cl = c;
  const all = cl.readFile().nodes;
  const spare = all.find((n) => n.id === "n4") as ClusterFileNode;
  cl.editFile((f) => {
    f.nodes = all.slice(0, 3);
    f.founders = ["n1", "n2", "n3"];
  });
  for (const id of ["n1", "n2", "n3"]) cl.start(id, { args: ARGS });
  await cl.waitVoters(3);
  const leader = await cl.leader();
  const down = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const up = ["n1", "n2", "n3"].filter((id) => id !== down);
  expect(await cl.stop(down)).toBe(0);

  // 480 values of 64 KiB: 30 MB of state, written through both live nodes.
  let turn = 0;
  await writeBulk(cl, { via: () => up[turn++ % 2]!, count: 480, bytes: 64 * 1024, parallel: 8 });
  // Then many small changes, one at a time: more messages than the leader's send queue to the
  // stopped node holds (1024), so the node cannot catch up from that queue when it reconnects.
  for (let i = 0; i < 1500; i++) expect((await cl.post(leader, { i }, { tags: ["small"] })).status).toBe(201);
  await waitFor("the leader's log to be compacted", async () => (await cl.status(leader)).index.first > 1500, 60_000, 200);
  // Compaction copied nothing: the state database is the snapshot; no checkpoint file yet.
  expect(await checkpoints(cl, leader)).toEqual([]);

  // The follower kept down comes back behind the compacted log: a checkpoint is built for it and sent.
  cl.start(down, { args: ARGS });
  await cl.waitForLog(down, "an installed checkpoint", (l) => (l.msg ?? "").startsWith("installed checkpoint ckpt-"), 60_000);
  expect(messages(cl, leader).some((m) => m.startsWith(`building a checkpoint now: ${down} is behind the compacted log`))).toBe(true);
  expect(messages(cl, leader).some((m) => m.startsWith(`${down} is behind the compacted log: sending checkpoint`))).toBe(true);
  expect(messages(cl, leader).some((m) => /^checkpoint ckpt-\d+ at index \d+: \d+ bytes in \d+ ms \(peer\)/.test(m))).toBe(true);
  const lst = await checkpoints(cl, leader);
  expect(lst.length).toBe(1);
  expect(lst[0]!.bytes).toBeGreaterThan(30 * MiB);
  expect((await cl.status(leader)).index.checkpoint).toBe(lst[0]!.index);
  await expectSameState(cl, down, leader);

  // A new node: added to the file, it receives the newest checkpoint; kill -9 it in the middle.
  const total = (await checkpoints(cl, leader))[0]!.bytes;
  // Writes go on while the checkpoint is streamed, cut and resumed.
  w = new Writer(cl, { via: () => [leader], clients: 2, name: "during" }).start();
  await w.more(10);
  const joinFrom = performance.now();
  cl.editFile((f) => f.nodes.push(spare));
  cl.start("n4", { args: ARGS });
  const n4data = cl.dataDir("n4");
  await waitFor("n4 to have received a quarter of the checkpoint", () => partBytes(n4data) > total / 4, 60_000, 2);
  await cl.signal("n4", "SIGKILL");
  const kept = partBytes(n4data);
  expect(kept).toBeGreaterThan(0);
  expect(kept).toBeLessThan(total);
  expect(messages(cl, "n4").some((m) => m.startsWith("installed checkpoint"))).toBe(false);

  cl.start("n4", { args: ARGS });
  // The leader learns of the restart at its next retransmission (no need to wait out its 15 s stall timeout).
  const resumed = await cl.waitForLog("n4", "resuming the transfer", (l) => /resuming at byte \d+/.test(l.msg ?? ""), 12_000);
  const at = Number(/resuming at byte (\d+)/.exec(resumed.msg!)![1]);
  expect(at).toBe(kept);
  await cl.waitForLog("n4", "an installed checkpoint", (l) => (l.msg ?? "").startsWith("installed checkpoint ckpt-"), 60_000);
  await cl.waitVoters(4, 60_000);
  const joinTo = performance.now();
  await w.more(10);
  await w.stop();
  expect(w.unsettled.size).toBe(0);
  expect(w.maxGapMs(joinFrom, joinTo)).toBeLessThan(1000);
  expect(filesIn(join(n4data, "checkpoints", "incoming")).filter((f) => f.endsWith(".part"))).toEqual([]);
  await expectSameState(cl, "n4", leader);
  const n4Feed = await cl.feed("n4");
  for (const a of w.acks) expect(n4Feed.find((ch) => ch.index === a.index)?.data).toEqual(a.data);
  // Replication goes on to everyone afterwards.
  const after = await cl.post("n4", { after: "catch-up" });
  expect(after.status).toBe(201);
  for (const id of ["n1", "n2", "n3", "n4"]) {
    await waitFor(`${id} to have the next change`, async () => (await cl.status(id)).feed.last >= after.body.index, 10_000, 50);
  }
}, 240_000);

test("kill -9 during a checkpoint build: after restart no partial checkpoint is used, the node serves, and the next build works", async () => {
  c = await E2ECluster.init(1);
  const cl = c;
  const args = ["--checkpoint-every", "0", "--checkpoint-interval", "0", "--checkpoint-log-bytes", "0"];
  cl.start("n1", { args });
  await cl.waitVoters(1);
  await writeBulk(cl, { via: () => "n1", count: 200, bytes: 64 * 1024, prefix: "a/" });
  const first = (await cl.json("n1", "/admin/checkpoint", { method: "POST" })).body.checkpoint as Ckpt;
  expect(first.id).toMatch(/^ckpt-\d{12}$/);
  // A bigger state, so that the next build takes a while.
  await writeBulk(cl, { via: () => "n1", count: 1200, bytes: 64 * 1024, prefix: "b/" });
  const dir = join(cl.dataDir("n1"), "checkpoints");
  void cl.json("n1", "/admin/checkpoint", { method: "POST" }).catch(() => null);
  const tmp = await waitFor("a build in progress (a .db.tmp file)", () => filesIn(dir).find((f) => f.endsWith(".db.tmp")), 20_000, 2);
  await cl.signal("n1", "SIGKILL");
  expect(filesIn(dir)).toContain(tmp);

  cl.start("n1", { args });
  await cl.waitVoters(1);
  await cl.waitForLog("n1", "the partial files removed", (l) => (l.msg ?? "").startsWith("removed partial or old checkpoint files") && (l.msg ?? "").includes(tmp));
  expect(filesIn(dir).filter((f) => f.includes(".tmp") || f.startsWith("build-"))).toEqual([]);
  const list = await checkpoints(cl, "n1");
  expect(list.map((m) => m.id)).toEqual([first.id]);
  // What is listed is complete: the file matches its manifest.
  const file = join(dir, `${first.id}.db`);
  expect(statSync(file).size).toBe(first.bytes);
  expect(createHash("sha256").update(readFileSync(file)).digest("hex")).toBe(first.sha256);
  // The node serves: reads of data written before the kill, new writes, and a new checkpoint.
  const r = await cl.get("n1", "/kv/b/01199");
  expect(r.status).toBe(200);
  expect((await r.arrayBuffer()).byteLength).toBe(64 * 1024);
  expect((await cl.post("n1", { after: "restart" })).status).toBe(201);
  const next = (await cl.json("n1", "/admin/checkpoint", { method: "POST" })).body.checkpoint as Ckpt;
  expect(next.index).toBeGreaterThan(first.index);
  expect((await checkpoints(cl, "n1")).map((m) => m.id)).toEqual([next.id, first.id]);
}, 180_000);

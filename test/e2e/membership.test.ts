/**
 * The cluster file drives membership (issue 4): real processes of dist/cairn,
 * certificates from `cairn init`, the file rewritten atomically (temporary
 * file + rename) while a steady write load runs; at the end every
 * acknowledged write is on every remaining node exactly once, in the same
 * order.
 */
import { afterEach, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, expectFeedsAgree, type ClusterFileNode, type LogLine, Writer } from "./harness.ts";

let c: E2ECluster | undefined;
let testNo = 0;
let w: Writer | undefined;
afterEach(async () => {
  await w?.stop(0);
  w = undefined;
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, `membership-${++testNo}`));
  await c?.close();
  c = undefined;
});

/**
 * `cairn init` for `total` nodes (so every node has a certificate), then a
 * file that lists only the first `listed`; returns the cluster and the
 * entries held back.
 */
async function initListing(total: number, listed: number): Promise<{ cl: E2ECluster; spare: Map<string, ClusterFileNode> }> {
  const cl = await E2ECluster.init(total);
  const all = cl.readFile().nodes;
  cl.editFile((f) => {
    f.nodes = all.slice(0, listed);
    f.founders = all.slice(0, listed).map((n) => n.id);
  });
  return { cl, spare: new Map(all.slice(listed).map((n) => [n.id, n])) };
}

async function voters(cl: E2ECluster, among: string[]): Promise<string[]> {
  const l = await cl.leader(20_000, among);
  const st = await cl.status(l);
  return st.members.filter((m: { role: string }) => m.role === "voter").map((m: { id: string }) => m.id).sort();
}

/** Waits until the agreed leader of `among` reports exactly these voters and no learners. */
async function waitMembers(cl: E2ECluster, among: string[], want: string[], timeoutMs = 30_000): Promise<void> {
  const sorted = [...want].sort();
  await waitFor(
    `voters ${sorted.join(",")}`,
    async () => {
      const l = await cl.leader(timeoutMs, among);
      const st = await cl.status(l);
      const v = st.members.filter((m: { role: string }) => m.role === "voter").map((m: { id: string }) => m.id).sort();
      const learners = st.members.filter((m: { role: string }) => m.role === "learner");
      return JSON.stringify(v) === JSON.stringify(sorted) && learners.length === 0;
    },
    timeoutMs,
    100,
  );
}

/** The membership steps logged by any of `ids` (each leader logs the steps it takes). */
function steps(cl: E2ECluster, ids: string[]): string[] {
  return ids.flatMap((id) => cl.allLogs(id).map((l) => l.msg ?? "").filter((m) => /^membership: (addLearner|promote|remove|demote) /.test(m) || m.startsWith("membership: this leader leaves")));
}

const msg = (re: RegExp) => (l: LogLine) => re.test(l.msg ?? "");

test("grow 3 -> 4 -> 5 and shrink back to 3 by editing the file, under write load; nothing acknowledged is lost", async () => {
  const { cl, spare } = await initListing(5, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  w = new Writer(cl, { via: () => [...cl.procs.keys()], clients: 4 }).start();
  await w.more(20);

  for (const id of ["n4", "n5"]) {
    cl.editFile((f) => f.nodes.push(spare.get(id)!));
    cl.start(id);
    const members = ["n1", "n2", "n3", "n4", "n5"].slice(0, id === "n4" ? 4 : 5);
    await waitMembers(cl, members, members);
    await w.more(20);
  }
  expect(await voters(cl, ["n1", "n2", "n3", "n4", "n5"])).toEqual(["n1", "n2", "n3", "n4", "n5"]);

  // Both removed in one edit: the leader takes them out one at a time.
  cl.editFile((f) => (f.nodes = f.nodes.filter((n) => n.id !== "n4" && n.id !== "n5")));
  await waitMembers(cl, ["n1", "n2", "n3"], ["n1", "n2", "n3"]);
  for (const id of ["n4", "n5"]) await cl.waitForLog(id, "that it was removed", msg(/was removed from the cluster/));
  for (const id of ["n4", "n5"]) await cl.stop(id);
  await w.more(20);
  await w.stop();

  const s = steps(cl, ["n1", "n2", "n3"]);
  console.log(`grow/shrink: ${w.summary()}\n  steps: ${s.join(" | ")}`);
  for (const want of ["addLearner n4", "promote n4", "addLearner n5", "promote n5", "remove n4", "remove n5"]) {
    expect(s.some((m) => m.startsWith(`membership: ${want} `))).toBe(true);
  }
  await expectFeedsAgree(cl, ["n1", "n2", "n3"], w);
}, 120_000);

test("remove the leader through the file: it hands leadership over first, then is removed; restarted with its old data it stays out and says why", async () => {
  const { cl } = await initListing(3, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const old = await cl.leader();
  const rest = ["n1", "n2", "n3"].filter((id) => id !== old);
  w = new Writer(cl, { via: () => [...cl.procs.keys()], clients: 4 }).start();
  await w.more(20);
  const removedEntry = cl.readFile().nodes.find((n) => n.id === old)!;

  cl.editFile((f) => (f.nodes = f.nodes.filter((n) => n.id !== old)));
  const handOver = await cl.waitForLog(old, "the hand-over", msg(/^membership: this leader leaves the cluster: handing leadership to (\S+) first/));
  const to = /handing leadership to (\S+) first/.exec(handOver.msg!)![1]!;
  expect(rest).toContain(to);
  await cl.waitForLog(old, "that it was removed", msg(/this node was removed from the cluster/));
  await waitMembers(cl, rest, rest);
  expect(steps(cl, rest).some((m) => m.startsWith(`membership: remove ${old} `))).toBe(true);
  await w.more(20);

  // The removed node's process is stopped, then started again on its old data with the new file.
  await cl.stop(old);
  const before = await cl.status(await cl.leader(20_000, rest));
  cl.start(old);
  expect(await cl.exitOf(old)).toBe(1);
  const why = cl.lastRunLogs(old).join("\n");
  expect(why).toContain(`node ${old} was removed from cluster`);
  expect(why).toContain("does not take part");
  await w.more(20);
  const after = await cl.status(await cl.leader(20_000, rest));
  expect(after.term).toBe(before.term); // it did not disturb the cluster (no election)

  // Listed again by mistake with its old data: still refused, with the reason.
  cl.editFile((f) => f.nodes.push(removedEntry));
  cl.start(old);
  expect(await cl.exitOf(old)).toBe(1);
  expect(cl.lastRunLogs(old).join("\n")).toContain("a removed node does not rejoin with its old data");
  // The documented way back: an empty data directory. It joins as a new node.
  rmSync(cl.dataDir(old), { recursive: true, force: true });
  cl.start(old);
  await waitMembers(cl, ["n1", "n2", "n3"], ["n1", "n2", "n3"]);
  await w.more(20);
  await w.stop();
  console.log(`remove leader ${old} (handed to ${to}): ${w.summary()}`);
  await expectFeedsAgree(cl, ["n1", "n2", "n3"], w);
}, 120_000);

/**
 * Clumsy edits of the cluster file on a running cluster (issue 8): real
 * processes of dist/cairn, certificates from `cairn init`, the file rewritten
 * atomically while a writer runs. An emptied file and an edit that takes a
 * majority of the voters out change no membership (held, with a /status
 * problem) until the file says "allowShrink": true; a reload naming a TLS file
 * that does not exist is ignored. At the end every acknowledged write is on
 * the remaining node exactly once, in order.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, expectFeedsAgree, type LogLine, Writer } from "./harness.ts";

let c: E2ECluster | undefined;
let w: Writer | undefined;
let testNo = 0;
afterEach(async () => {
  await w?.stop(0);
  w = undefined;
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, `clusterfile-${++testNo}`));
  await c?.close();
  c = undefined;
});

const ALL = ["n1", "n2", "n3"];

async function voters(cl: E2ECluster, among: string[]): Promise<string[]> {
  const st = await cl.status(await cl.leader(20_000, among));
  return st.members.filter((m: { role: string }) => m.role === "voter").map((m: { id: string }) => m.id).sort();
}

/** Waits until /status of each of `ids` lists a problem containing `text`; returns them. */
async function waitProblem(cl: E2ECluster, ids: string[], text: string): Promise<string[]> {
  const out: string[] = [];
  for (const id of ids) {
    const p = await waitFor(
      `${id}'s /status to list a problem with "${text}"`,
      async () => ((await cl.status(id).catch(() => null))?.problems as string[] | undefined)?.find((x) => x.includes(text)),
      20_000,
      50,
    );
    out.push(p);
  }
  return out;
}

const membershipSteps = (cl: E2ECluster) =>
  ALL.flatMap((id) => cl.allLogs(id).map((l) => l.msg ?? "")).filter((m) => /^membership: (addLearner|promote|remove|demote) /.test(m));

test("an emptied file and an edit removing 2 of 3 voters change nothing (held, in /status) until allowShrink; a reload naming a missing TLS file is ignored", async () => {
  const cl = await E2ECluster.init(3);
  c = cl;
  for (const id of ALL) cl.start(id);
  await cl.waitVoters(3);
  w = new Writer(cl, { via: () => [...cl.procs.keys()], clients: 4 }).start();
  await w.more(20);
  const full = cl.readFile();
  const founding = membershipSteps(cl); // the founder adding the others

  // 1. "nodes": [] is refused by every node: the last good file stays in force.
  cl.editFile((f) => (f.nodes = []));
  for (const id of ALL) {
    await cl.waitForLog(id, "that the emptied file is ignored", (l: LogLine) => l.level === "warn" && (l.msg ?? "").includes(`cluster file ${cl.file}: nodes: the file lists no nodes`));
  }
  await waitProblem(cl, ALL, "the file lists no nodes");
  await w.more(30);
  expect(await voters(cl, ALL)).toEqual(ALL);

  // 2. Two of three voters out in one edit (the leader among them): held, shown in every node's /status.
  const leader = await cl.leader();
  const keep = ALL.find((id) => id !== leader)!;
  cl.editFile((f) => (f.nodes = full.nodes.filter((n) => n.id === keep)));
  const held = await cl.waitForLog(leader, "the held change", (l) => (l.msg ?? "").startsWith(`membership: held: cluster file ${cl.file}: the cluster file takes 2 of the 3 voters out at once`));
  expect(held.level).toBe("warn");
  const problems = await waitProblem(cl, ALL, "membership change held");
  expect(problems[0]).toContain('add "allowShrink": true');
  // The "emptied file" problem is gone: this version is in force (held).
  expect(((await cl.status(keep)).problems as string[]).some((p) => p.includes("lists no nodes"))).toBe(false);
  await w.more(40); // more than several planner rounds (every 250 ms) under load
  expect(await voters(cl, ALL)).toEqual(ALL);
  expect(membershipSteps(cl)).toEqual(founding);

  // 3. The same edit with "allowShrink": true goes ahead, one change at a time, the leader last.
  cl.editFile((f) => (f.allowShrink = true));
  await waitFor("only the kept node to be a voter", async () => JSON.stringify(await voters(cl, [keep]).catch(() => [])) === JSON.stringify([keep]), 30_000, 100);
  for (const id of ALL.filter((x) => x !== keep)) {
    await cl.waitForLog(id, "that it was removed", (l) => /was removed from the cluster/.test(l.msg ?? ""));
    await cl.stop(id);
  }
  expect(((await cl.status(keep)).problems as string[]).some((p) => p.includes("membership change held"))).toBe(false);
  await w.more(20);

  // 4. A reload naming a TLS file that does not exist is ignored, naming the file; the node keeps serving.
  const before = cl.readFile();
  const missing = (before.tls!.cert as string).replace(/\.pem$/, "-missing.pem");
  cl.editFile((f) => (f.tls = { ...f.tls!, cert: missing }));
  const abs = join(cl.dir, missing.split("${id}").join(keep));
  const warn = await cl.waitForLog(keep, "that the TLS path is refused", (l) => l.level === "warn" && (l.msg ?? "").includes(`cluster file ${cl.file}: tls.cert: ${abs}: no such file`));
  expect(warn.msg).toContain("ignored, the last good version stays in force");
  await waitProblem(cl, [keep], `tls.cert: ${abs}`);
  await w.more(20);

  // 5. The TLS path put back and the raft timings changed: used, but the timings only at the next restart, and it says so.
  cl.editFile((f) => {
    f.tls = before.tls;
    f.raft = { heartbeatMs: 60, electionMs: 600 };
  });
  await cl.waitForLog(keep, "that new timings wait for a restart", (l) => l.level === "warn" && (l.msg ?? "").includes("raft timings changed to heartbeatMs 60, electionMs 600; they take effect when the node restarts"));
  const now = (await waitProblem(cl, [keep], "raft timings changed"))[0];
  expect(now).toContain("(in use: 50, 500)");
  expect(((await cl.status(keep)).problems as string[]).some((p) => p.includes("tls.cert"))).toBe(false);
  await w.more(20);
  await w.stop();
  console.log(`clusterfile: ${w.summary()}`);
  await expectFeedsAgree(cl, [keep], w);
}, 180_000);

test("serve refuses to start, exit 2, when the TLS files the cluster file names for it are missing or not PEM", async () => {
  const cl = await E2ECluster.init(3);
  c = cl;
  const tls = cl.readFile().tls!;
  cl.editFile((f) => (f.tls = { ...tls, key: tls.key.replace(/\.(\w+)$/, "-missing.$1") }));
  cl.start("n1");
  expect(await cl.exitOf("n1")).toBe(2);
  const abs = join(cl.dir, tls.key.replace(/\.(\w+)$/, "-missing.$1").split("${id}").join("n1"));
  expect(cl.lastRunLogs("n1").join("\n")).toContain(`tls.key: ${abs}: no such file (ENOENT)`);

  // The CA file replaced by something that is not PEM.
  cl.editFile((f) => (f.tls = { ...tls, ca: "cluster.json" }));
  cl.start("n1");
  expect(await cl.exitOf("n1")).toBe(2);
  expect(cl.lastRunLogs("n1").join("\n")).toContain(`tls.ca: ${cl.file}: is not PEM`);
}, 60_000);

/**
 * The cluster file drives membership (issue 4): real processes of dist/cairn,
 * certificates from `cairn init`, the file rewritten atomically (temporary
 * file + rename) while a steady write load runs; at the end every
 * acknowledged write is on every remaining node exactly once, in the same
 * order.
 */
import { afterEach, expect, test } from "bun:test";
import { cpSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort, waitFor } from "../helpers/ports.ts";
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

/** Lines about configurations and membership steps logged by `ids` (a change of membership shows here). */
function confLines(cl: E2ECluster, ids: string[]): string[] {
  return ids.flatMap((id) => cl.allLogs(id).map((l) => l.msg ?? "").filter((m) => m.startsWith("configuration at index") || /^membership: (addLearner|promote|remove|demote) /.test(m)));
}

test("move a follower to a new peer port through the file: no restart, no membership change, replication goes on to it", async () => {
  const { cl } = await initListing(3, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const leader = await cl.leader();
  const f = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const pids = new Map([...cl.procs].map(([id, p]) => [id, p.child.pid]));
  w = new Writer(cl, { via: () => ["n1", "n2", "n3"], clients: 4 }).start();
  await w.more(20);
  const confBefore = confLines(cl, ["n1", "n2", "n3"]).length;
  const oldPeer = cl.peer(f);
  const port = await freePort();
  cl.editFile((file) => (file.nodes.find((n) => n.id === f)!.peer = `127.0.0.1:${port}`));

  await cl.waitForLog(f, "that it listens on the new port", msg(new RegExp(`now listening on 127\\.0\\.0\\.1:${port}`)));
  // The leader dials the new address...
  await cl.waitForLog(leader, `a connection to ${f} at the new port`, (l) => l.msg === "connected to peer" && l.peer === f && l.address === `127.0.0.1:${port}`);
  // ...nothing listens on the old one any more...
  expect(await refused(oldPeer)).toBe(true);
  // ...and the follower keeps applying what the leader commits from now on.
  const target = (await cl.status(leader)).index.commit + 20;
  await w.more(40);
  await waitFor(`${f} applying past ${target}`, async () => (await cl.status(f)).index.applied >= target, 20_000);
  await w.stop();

  expect(confLines(cl, ["n1", "n2", "n3"]).length).toBe(confBefore); // no membership change
  for (const [id, pid] of pids) expect(cl.procs.get(id)?.child.pid).toBe(pid); // no restart
  expect(await voters(cl, ["n1", "n2", "n3"])).toEqual(["n1", "n2", "n3"]);
  console.log(`move ${f} ${oldPeer} -> 127.0.0.1:${port}: ${w.summary()}`);
  await expectFeedsAgree(cl, ["n1", "n2", "n3"], w);
}, 90_000);

/** True if a TCP connection to host:port is refused (nothing listens there). */
async function refused(hostPort: string): Promise<boolean> {
  const [host, port] = [hostPort.slice(0, hostPort.lastIndexOf(":")), Number(hostPort.slice(hostPort.lastIndexOf(":") + 1))];
  return await new Promise((res) => {
    const s = connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      res(false);
    });
    s.once("error", () => res(true));
  });
}

test("start from a file with one node, then add two: the first founds alone, the others join through the file", async () => {
  const { cl, spare } = await initListing(3, 1);
  c = cl;
  cl.start("n1");
  await waitMembers(cl, ["n1"], ["n1"]);
  w = new Writer(cl, { via: () => [...cl.procs.keys()], clients: 4 }).start();
  await w.more(20);
  cl.editFile((f) => f.nodes.push(spare.get("n2")!, spare.get("n3")!));
  cl.start("n2");
  cl.start("n3");
  await waitMembers(cl, ["n1", "n2", "n3"], ["n1", "n2", "n3"]);
  await w.more(20);
  await w.stop();
  const s = steps(cl, ["n1", "n2", "n3"]);
  for (const want of ["addLearner n2", "addLearner n3", "promote n2", "promote n3"]) expect(s.some((m) => m.startsWith(`membership: ${want} `))).toBe(true);
  console.log(`one node, then two more: ${w.summary()}`);
  await expectFeedsAgree(cl, ["n1", "n2", "n3"], w);
}, 90_000);

test("a broken cluster file (bad JSON, a duplicate id, a missing field, another cluster's name) changes nothing and is reported once on every node", async () => {
  const { cl } = await initListing(3, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  w = new Writer(cl, { via: () => ["n1", "n2", "n3"], clients: 4 }).start();
  await w.more(20);
  const good = cl.readFile();
  const leader = await cl.leader();
  const term = (await cl.status(leader)).term;
  const confBefore = confLines(cl, ["n1", "n2", "n3"]).length;
  const text = JSON.stringify(good, null, 2);
  const dup = structuredClone(good);
  dup.nodes[2]!.id = dup.nodes[0]!.id;
  const missing = structuredClone(good) as unknown as { nodes: Record<string, unknown>[] };
  delete missing.nodes[1]!.api;
  const other = { ...structuredClone(good), cluster: "another-cluster" };
  const cases: { name: string; body: string; says: RegExp }[] = [
    { name: "bad JSON", body: text.replace('"nodes": [', '"nodes": [,'), says: /cluster file \S+: .*line \d+/ },
    { name: "a duplicate id", body: JSON.stringify(dup), says: /nodes\[2\]\.id: duplicate id "n1" \(also nodes\[0\]\)/ },
    { name: "a missing field", body: JSON.stringify(missing), says: /nodes\[1\]\.api: missing; expected an http/ },
    { name: "another cluster's name", body: JSON.stringify(other), says: /now names cluster "another-cluster", but this node belongs to cluster/ },
  ];
  for (const k of cases) {
    cl.writeFileAtomic(k.body);
    for (const id of ["n1", "n2", "n3"]) await cl.waitForLog(id, `a line about ${k.name}`, msg(k.says), 10_000);
    await w.more(10);
  }
  // Back to the good file (same content as before the mistakes): nothing to apply.
  cl.writeFileAtomic(text);
  await w.more(20);
  await w.stop();
  for (const id of ["n1", "n2", "n3"]) {
    for (const k of cases) {
      const lines = cl.allLogs(id).filter(msg(k.says));
      expect(lines.length).toBe(1); // one line each, on every node
      expect(lines[0]!.level).toBe("warn");
      if (k.name !== "another cluster's name") expect(lines[0]!.msg).toContain("ignored, the last good version stays in force");
    }
  }
  expect(confLines(cl, ["n1", "n2", "n3"]).length).toBe(confBefore);
  expect((await cl.status(leader)).term).toBe(term);
  expect(await voters(cl, ["n1", "n2", "n3"])).toEqual(["n1", "n2", "n3"]);
  console.log(`broken files: ${w.summary()}`);
  await expectFeedsAgree(cl, ["n1", "n2", "n3"], w);
}, 90_000);

test("removing two of three voters (the leader among them) in one edit with allowShrink goes one safe step at a time", async () => {
  const { cl } = await initListing(3, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const leader = await cl.leader();
  const keep = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const other = ["n1", "n2", "n3"].find((id) => id !== leader && id !== keep)!;
  w = new Writer(cl, { via: () => [keep], clients: 4 }).start();
  await w.more(20);
  // A majority out in one edit is held unless the file says so (issue 8; test/e2e/clusterfile.test.ts).
  cl.editFile((f) => {
    f.nodes = f.nodes.filter((n) => n.id === keep);
    f.allowShrink = true;
  });
  await waitMembers(cl, [keep], [keep], 30_000);
  await w.more(20);
  await w.stop();
  const s = steps(cl, ["n1", "n2", "n3"]);
  console.log(`remove two of three (${leader} leading, keeping ${keep}): ${w.summary()}\n  steps: ${s.join(" | ")}`);
  // One at a time: the follower first, then the leader hands over to the one that stays, which removes it.
  const order = s.filter((m) => /^membership: (remove|this leader)/.test(m));
  expect(order[0]).toStartWith(`membership: remove ${other} `);
  expect(order[1]).toStartWith(`membership: this leader leaves the cluster: handing leadership to ${keep} first`);
  expect(order[2]).toStartWith(`membership: remove ${leader} `);
  await expectFeedsAgree(cl, [keep], w);
}, 90_000);

test("a removal that would leave no working majority is refused with the reason, and goes ahead once the file allows it", async () => {
  const { cl } = await initListing(3, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const leader = await cl.leader();
  const [a, dead] = ["n1", "n2", "n3"].filter((id) => id !== leader) as [string, string];
  w = new Writer(cl, { via: () => [leader], clients: 2 }).start();
  await w.more(10);
  await cl.signal(dead, "SIGKILL");
  await w.more(10);
  // The operator sees the node down (no contact for an election timeout), then edits the file.
  await waitFor(`${leader} to see ${dead} silent`, async () => {
    const m = (await cl.status(leader)).members.find((x: { id: string }) => x.id === dead);
    return m && (m.lastContactMs === null || m.lastContactMs > 500);
  });
  cl.editFile((f) => (f.nodes = f.nodes.filter((n) => n.id !== a)));
  const refusal = await cl.waitForLog(leader, "the refusal", msg(new RegExp(`^membership: refuse: removing ${a} would leave voters`)));
  expect(refusal.msg).toContain(`bring ${dead} back, or take it out of the cluster file if gone for good`);
  expect(refusal.msg).toContain('"allowShrink": true'); // both out at once would be a majority: held without it
  await w.more(10);
  expect(await voters(cl, [leader, a])).toEqual(["n1", "n2", "n3"]); // nothing changed
  // The operator takes the dead node out too (two of three: allowShrink, as the refusal says): it goes
  // first (that raises fault tolerance), then the other.
  cl.editFile((f) => {
    f.nodes = f.nodes.filter((n) => n.id !== dead);
    f.allowShrink = true;
  });
  await waitMembers(cl, [leader], [leader], 30_000);
  await w.more(10);
  await w.stop();
  const order = steps(cl, [leader]).filter((m) => m.startsWith("membership: remove"));
  expect(order[0]).toStartWith(`membership: remove ${dead} `);
  expect(order[1]).toStartWith(`membership: remove ${a} `);
  console.log(`refused removal: ${refusal.msg}\n  ${w.summary()}`);
  await expectFeedsAgree(cl, [leader], w);
}, 90_000);

test("a data directory from another cluster is refused at start, naming both clusters and what to do", async () => {
  const other = await E2ECluster.init(1);
  try {
    other.start("n1");
    await waitMembers(other, ["n1"], ["n1"]);
    expect((await other.post("n1", { from: "the other cluster" })).status).toBe(201);
    await other.stop("n1");
    const { cl } = await initListing(3, 3);
    c = cl;
    cpSync(other.dataDir("n1"), cl.dataDir("n1"), { recursive: true });
    cl.start("n1");
    expect(await cl.exitOf("n1")).toBe(1);
    const line = cl
      .lastRunLogs("n1")
      .map((l) => JSON.parse(l) as LogLine)
      .find((l) => l.level === "error");
    const theirs = other.readFile().cluster;
    const ours = cl.readFile().cluster;
    console.log(`another cluster's data: ${line?.msg}`);
    expect(line?.msg).toContain(`holds data of cluster "${theirs}"`);
    expect(line?.msg).toContain(`is for cluster "${ours}"`);
    expect(line?.msg).toContain("point --data at this node's data directory");
  } finally {
    await other.close();
  }
}, 60_000);

test("a node the file does not list yet waits without taking part, and joins once the file lists it", async () => {
  const { cl, spare } = await initListing(4, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  w = new Writer(cl, { via: () => ["n1", "n2", "n3"], clients: 4 }).start();
  cl.start("n4");
  await cl.waitForLog("n4", "that it waits for the file", msg(/--id "n4" is not in it .*this node does not take part until the file lists it/));
  await w.more(20);
  expect(await voters(cl, ["n1", "n2", "n3"])).toEqual(["n1", "n2", "n3"]);
  cl.editFile((f) => f.nodes.push(spare.get("n4")!));
  await cl.waitForLog("n4", "that it found itself", msg(/^this node is n4 /));
  await waitMembers(cl, ["n1", "n2", "n3", "n4"], ["n1", "n2", "n3", "n4"]);
  await w.more(20);
  await w.stop();
  await expectFeedsAgree(cl, ["n1", "n2", "n3", "n4"], w);
}, 90_000);

test("a node removed while it was down, restarted on its old data with an old copy of the file, learns from its peers that it is out and stays out", async () => {
  const { cl } = await initListing(3, 3);
  c = cl;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const leader = await cl.leader();
  const gone = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const rest = ["n1", "n2", "n3"].filter((id) => id !== gone);
  w = new Writer(cl, { via: () => rest, clients: 4 }).start();
  await w.more(20);
  const oldFile = join(cl.dir, "old-cluster.json");
  cpSync(cl.file, oldFile);
  await cl.stop(gone);
  cl.editFile((f) => (f.nodes = f.nodes.filter((n) => n.id !== gone)));
  await waitMembers(cl, rest, rest);
  await w.more(20);
  const term = (await cl.status(leader)).term;

  // The operator forgot to copy the new file to its host: it starts with the old one.
  cl.start(gone, { args: ["--config", oldFile] });
  const told = await cl.waitForLog(gone, "that it was removed", msg(/^this node was removed from the cluster \(learned from n\d/));
  console.log(`restarted removed node: ${told.msg}`);
  await waitFor(`${gone} to report itself removed`, async () => (await cl.status(gone)).role === "removed");
  const r = await cl.post(gone, { via: "the removed node" });
  expect(r.status).toBe(503);
  expect(r.body.error.message).toContain("removed from the cluster");
  await w.more(20);
  expect((await cl.status(leader)).term).toBe(term); // it did not disturb the others
  expect(await voters(cl, rest)).toEqual(rest.sort());
  // From now on its data is marked: it refuses to start on it.
  await cl.stop(gone);
  cl.start(gone, { args: ["--config", oldFile] });
  expect(await cl.exitOf(gone)).toBe(1);
  expect(cl.lastRunLogs(gone).join("\n")).toContain("a removed node does not rejoin with its old data");
  await w.stop();
  await expectFeedsAgree(cl, rest, w);
}, 90_000);

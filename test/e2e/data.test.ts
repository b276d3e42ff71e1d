/**
 * The data tools of the built binary against real processes (issue 5):
 * backup -> restore, dump -> load, recover after a permanent loss of quorum,
 * and the 410 answer that points a reader below the retained feed at the
 * newest checkpoint.
 */
import { afterEach, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { allKeys, cli, fullFeed, messages, stateOf, writeBulk } from "./checkpoint-helpers.ts";
import { E2ECluster } from "./harness.ts";

const clusters: E2ECluster[] = [];
let testNo = 0;
afterEach(async () => {
  testNo++;
  for (const [i, c] of clusters.splice(0).entries()) {
    if (process.env.E2E_LOGS) c.dumpLogs(join(process.env.E2E_LOGS, `data-${testNo}-${i}`));
    await c.close();
  }
});

async function cluster(n: number, args: string[] = []): Promise<E2ECluster> {
  const c = await E2ECluster.init(n);
  clusters.push(c);
  const ids = c.readFile().nodes.map((x) => x.id);
  for (const id of ids) c.start(id, { args });
  await c.waitVoters(n);
  return c;
}

const ca = (c: E2ECluster) => join(c.dir, "ca", "ca.pem");

/** A mix of writes: text, JSON and binary keys, an overwrite, a delete, tagged changes and a batch. */
async function writeMix(c: E2ECluster, via: string[]): Promise<void> {
  const put = async (i: number, key: string, body: BodyInit, type: string) => {
    const r = await c.get(via[i % via.length]!, `/kv/${key}`, { method: "PUT", headers: { "content-type": type }, body });
    expect(r.status).toBeLessThan(300);
    await r.arrayBuffer();
  };
  for (let i = 0; i < 30; i++) {
    await put(i, `text/${i}`, `hello ${i}`, "text/plain; charset=utf-8");
    await put(i, `json/${i}`, JSON.stringify({ i, nested: { a: [i, "x"] } }), "application/json");
    await put(i, `bin/${i}`, new Uint8Array([0, 255, i, 7, 128]), "application/octet-stream");
    const r = await c.post(via[i % via.length]!, { order: i, note: "ü ✓" }, { tags: i % 2 ? ["orders", "odd"] : ["orders"] });
    expect(r.status).toBe(201);
  }
  await put(0, "text/3", "overwritten", "text/plain; charset=utf-8");
  expect((await c.json(via[0]!, "/kv/json/4", { method: "DELETE" })).status).toBe(200);
  const batch = await c.json(via[1 % via.length]!, "/changes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify([{ data: "b1", tags: ["batch"] }, { data: { b: 2 }, tags: [] }]) });
  expect(batch.status).toBe(201);
}

test("backup of a running node, restore into a new directory, serve it as a one-node cluster: identical keys and feed, and it takes writes", async () => {
  const src = await cluster(3);
  await writeMix(src, ["n1", "n2", "n3"]);
  const leader = await src.leader();
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const out = join(src.dir, "backup.db");
  // Online, from a follower: the backup is that node's applied state, as a fresh checkpoint.
  await waitFor("the follower to apply everything", async () => (await src.status(follower)).feed.last === (await src.status(leader)).feed.last, 10_000);
  const b = await cli(["backup", "--url", src.api(follower), "--ca", ca(src), "--out", out, "--token", src.token]);
  expect(b.stderr).toContain("backup of ckpt-");
  expect(b.code).toBe(0);
  expect(existsSync(`${out}.part`)).toBe(false);
  const listed = (await src.json(follower, "/checkpoints")).body.checkpoints as { id: string; sha256: string }[];
  expect(createHash("sha256").update(readFileSync(out)).digest("hex")).toBe(listed[0]!.sha256);
  const want = await stateOf(src, follower);
  expect(want.keyCount).toBe(89);

  // The target: certificates for two nodes, a file listing only n1 (n2 is added later: the cluster grows).
  const dst = await E2ECluster.init(2);
  clusters.push(dst);
  const dstNodes = dst.readFile().nodes;
  dst.editFile((f) => {
    f.nodes = dstNodes.filter((n) => n.id === "n1");
    f.founders = ["n1"];
  });
  const r = await cli(["restore", "--from", out, "--data", dst.dataDir("n1"), "--id", "n1"]);
  expect(r.code).toBe(0);
  expect(r.stderr).toContain("as a new one-node cluster");
  // Restoring over existing data is refused.
  const again = await cli(["restore", "--from", out, "--data", dst.dataDir("n1"), "--id", "n1"]);
  expect(again.code).not.toBe(0);
  expect(again.stderr).toContain("not empty");

  dst.start("n1");
  await dst.waitVoters(1);
  const got = await stateOf(dst, "n1");
  expect(got.keys).toBe(want.keys);
  expect(got.feed).toBe(want.feed);
  const srcStatus = await src.status(leader);
  const dstStatus = await dst.status("n1");
  expect(dstStatus.clusterId).not.toBe(srcStatus.clusterId);
  // It takes writes, continuing the feed where the backup ended.
  const w = await dst.post("n1", { after: "restore" });
  expect(w.status).toBe(201);
  expect(w.body.index).toBe(want.feedLast + 1);
  // Ready to grow: a node added to the file joins (its log starts at the restored state, so it gets a checkpoint).
  dst.editFile((f) => f.nodes.push(dstNodes.find((n) => n.id === "n2")!));
  dst.start("n2");
  await dst.waitVoters(2, 60_000);
  await waitFor("n2 to catch up", async () => (await dst.status("n2")).feed.last === want.feedLast + 1, 30_000, 100);
  const grown = await stateOf(dst, "n2");
  expect(grown.keys).toBe(got.keys);
  expect(grown.feedLast).toBe(want.feedLast + 1);
}, 120_000);

test("dump a cluster to NDJSON and load it into a fresh cluster: identical keys and feed data, tags and order", async () => {
  const src = await cluster(3);
  await writeMix(src, ["n1", "n2", "n3"]);
  // More keys than one page of GET /kv (1000), so that the dump pages through them.
  await writeBulk(src, { via: () => "n1", count: 1100, bytes: 16, prefix: "many/", parallel: 16 });
  const leader = await src.leader();
  const file = join(src.dir, "dump.ndjson");
  const d = await cli(["dump", "--config", src.file, "--out", file, "--token", src.token]);
  expect(d.code).toBe(0);
  // Not a terminal: plain progress lines, ending with "done".
  expect(d.stderr).toMatch(/dumped \d+ records .*done/);
  const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(lines[0].type).toBe("header");
  expect(lines.filter((l) => l.type === "change").length).toBe(30 * 4 + 2 + 2 + 1100);
  expect(lines.filter((l) => l.type === "kv").length).toBe(89 + 1100);

  const dst = await cluster(1);
  const l = await cli(["load", "--url", dst.api("n1"), "--ca", ca(dst), "--in", file, "--token", dst.token]);
  expect(l.code).toBe(0);
  expect(l.stderr).toMatch(/loaded \d+ records .*done/);
  const want = { keys: await allKeys(src, leader), feed: await fullFeed(src, leader) };
  const got = { keys: await allKeys(dst, "n1"), feed: await fullFeed(dst, "n1") };
  expect(got.feed.map((f) => [f.data, f.tags])).toEqual(want.feed.map((f) => [f.data, f.tags]));
  expect(got.feed.map((f) => f.index)).toEqual(want.feed.map((f) => f.index));
  expect(got.keys.map((k) => [k.key, k.contentType, k.value, k.text, k.base64])).toEqual(want.keys.map((k) => [k.key, k.contentType, k.value, k.text, k.base64]));
  // Replayed in order into an empty cluster, the keys even keep their versions.
  expect(got.keys.map((k) => k.version)).toEqual(want.keys.map((k) => k.version));
}, 120_000);

test("recover: two of three nodes lost for good; recover makes the last one a new cluster with all acknowledged data; the old nodes coming back are refused", async () => {
  const c = await cluster(3);
  const acked = new Map<number, unknown>();
  for (let i = 0; i < 40; i++) {
    const r = await c.post(["n1", "n2", "n3"][i % 3]!, { i }, { tags: ["before"] });
    expect(r.status).toBe(201);
    acked.set(r.body.index, { i });
  }
  expect((await c.json("n2", "/kv/config/mode", { method: "PUT", headers: { "content-type": "text/plain" }, body: "blue" })).status).toBeLessThan(300);
  const oldStatus = await c.status("n1");
  // The last write is committed on a majority, but n1 may not have applied it yet: it is in n1's log.
  const oldFile = join(c.dir, "cluster-old.json");
  copyFileSync(c.file, oldFile);
  // n2 and n3 are gone for good: killed, their disks "lost" (moved away; they come back later).
  for (const id of ["n2", "n3"]) {
    await c.signal(id, "SIGKILL");
    renameSync(c.dataDir(id), `${c.dataDir(id)}.lost`);
  }
  expect(await c.stop("n1", 20_000)).toBe(0);

  const no = await cli(["recover", "--data", c.dataDir("n1"), "--id", "n1"]);
  expect(no.code).not.toBe(0);
  expect(no.stderr).toContain("--yes");
  const wrongId = await cli(["recover", "--data", c.dataDir("n1"), "--id", "n2", "--yes"]);
  expect(wrongId.code).not.toBe(0);
  expect(wrongId.stderr).toContain("belongs to node n1");
  const r = await cli(["recover", "--data", c.dataDir("n1"), "--id", "n1", "--yes"]);
  expect(r.code).toBe(0);
  expect(r.stderr).toContain("recovered");

  c.editFile((f) => {
    f.nodes = f.nodes.filter((n) => n.id === "n1");
    f.founders = ["n1"];
  });
  c.start("n1");
  await c.waitVoters(1);
  const st = await c.status("n1");
  expect(st.clusterId).not.toBe(oldStatus.clusterId);
  expect(st.members.map((m: { id: string }) => m.id)).toEqual(["n1"]);
  const feed = await fullFeed(c, "n1");
  for (const [index, data] of acked) expect(feed.find((f) => f.index === index)?.data).toEqual(data);
  expect(await (await c.get("n1", "/kv/config/mode")).text()).toBe("blue");
  const w1 = await c.post("n1", { after: "recover" });
  expect(w1.status).toBe(201);

  // The old nodes come back with their old data and the old file: n1 refuses them.
  for (const id of ["n2", "n3"]) {
    cpSync(`${c.dataDir(id)}.lost`, c.dataDir(id), { recursive: true });
    c.start(id, { args: ["--config", oldFile] });
  }
  await waitFor("n1 to refuse the old nodes", () => messages(c, "n1").some((m) => m.includes("cluster ID mismatch") && /peer n[23] is in cluster/.test(m)), 20_000, 50);
  const termBefore = (await c.status("n1")).term;
  for (let i = 0; i < 20; i++) {
    const w = await c.post("n1", { after: "old nodes back", i });
    expect(w.status).toBe(201);
  }
  const after = await c.status("n1");
  expect(after.leader?.id).toBe("n1");
  expect(after.term).toBe(termBefore);
  expect(after.clusterId).toBe(st.clusterId);
  expect(after.members.map((m: { id: string }) => m.id)).toEqual(["n1"]);
  const oldView = await c.status("n2");
  expect(oldView.clusterId).toBe(oldStatus.clusterId);
  const n1Feed = await fullFeed(c, "n1");
  expect(n1Feed.filter((f) => (f.data as { after?: string })?.after === "old nodes back").length).toBe(20);

  // The way back for an old member: wiped, listed in the file again, it joins the recovered cluster.
  await c.signal("n2", "SIGKILL");
  rmSync(c.dataDir("n2"), { recursive: true, force: true });
  const n2Entry = JSON.parse(readFileSync(oldFile, "utf8")).nodes.find((n: { id: string }) => n.id === "n2");
  c.editFile((f) => f.nodes.push(n2Entry));
  c.start("n2");
  // (The old n3 still runs in its own old cluster: ask the new cluster's nodes only.)
  await waitFor("n1 and n2 to be the voters", async () => {
    const s = await c.status("n1");
    return s.members.filter((m: { role: string }) => m.role === "voter").length === 2 && !s.joint;
  }, 60_000, 100);
  await waitFor("n2 to catch up", async () => (await c.status("n2")).feed.last === (await c.status("n1")).feed.last, 30_000, 100);
  expect((await c.status("n2")).clusterId).toBe(st.clusterId);
  expect(JSON.stringify(await fullFeed(c, "n2"))).toBe(JSON.stringify(await fullFeed(c, "n1")));
}, 120_000);

test("GET /changes below the retained feed answers 410 with the newest checkpoint and the index to resume from", async () => {
  const c = await cluster(1, ["--retain-changes", "10", "--retain-age", "0", "--checkpoint-every", "50", "--checkpoint-trailing", "5"]);
  for (let i = 0; i < 200; i++) expect((await c.post("n1", { i }, { tags: ["t"] })).status).toBe(201);
  const st = await waitFor("the feed to be trimmed", async () => {
    const s = await c.status("n1");
    return s.feed.first > 1 ? s : undefined;
  }, 30_000, 100);
  expect(messages(c, "n1").some((m) => m.startsWith("feed retention: trimmed"))).toBe(true);
  const gone = await c.json("n1", "/changes?since=0");
  expect(gone.status).toBe(410);
  expect(gone.body.error.code).toBe("gone");
  const list = (await c.json("n1", "/checkpoints")).body.checkpoints as { id: string; feedLast: number; sha256: string; index: number }[];
  const newest = list[0]!;
  expect(gone.body.checkpoint).toEqual({ id: newest.id, index: newest.feedLast, url: `/checkpoints/${newest.id}` });
  expect(gone.body.resumeFrom).toBe(newest.feedLast);
  expect(gone.body.resumeFrom).toBeGreaterThanOrEqual(st.feed.first - 1);
  // The pointer works: the checkpoint downloads with its checksum, and the feed continues after resumeFrom.
  const dl = await c.get("n1", gone.body.checkpoint.url);
  expect(dl.status).toBe(200);
  const body = new Uint8Array(await dl.arrayBuffer());
  expect(dl.headers.get("x-checksum-sha256")).toBe(newest.sha256);
  expect(createHash("sha256").update(body).digest("hex")).toBe(newest.sha256);
  // (The newest checkpoint may hold every change so far: a new one shows where the feed goes on.)
  expect((await c.post("n1", { i: "after" })).status).toBe(201);
  const rest = await c.json("n1", `/changes?since=${gone.body.resumeFrom}&limit=1000`);
  expect(rest.status).toBe(200);
  expect(rest.body.changes[0].index).toBe(gone.body.resumeFrom + 1);
  expect(rest.body.changes.at(-1).data).toEqual({ i: "after" });
  expect(rest.body.changes.map((ch: { index: number }) => ch.index)).toEqual(Array.from({ length: rest.body.changes.length }, (_, k) => gone.body.resumeFrom + 1 + k));
  // A checkpoint fetched with the CLI verifies too.
  const out = join(c.dir, "fetched.db");
  const f = await cli(["checkpoint", "fetch", newest.id, "--out", out, "--url", c.api("n1"), "--ca", ca(c), "--token", c.token]);
  expect(f.code).toBe(0);
  expect(createHash("sha256").update(readFileSync(out)).digest("hex")).toBe(newest.sha256);
  rmSync(out);
}, 120_000);

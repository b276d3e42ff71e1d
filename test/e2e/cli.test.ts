/**
 * The client commands of the binary against a real 3-node TLS cluster:
 * they find a node from the cluster file, trust its CA, and print results.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { E2ECluster, runCairn } from "./harness.ts";

let c: E2ECluster;
beforeAll(async () => {
  c = await E2ECluster.init(3);
  for (const id of ["n1", "n2", "n3"]) c.start(id);
  await c.waitVoters(3);
}, 60_000);
afterAll(async () => {
  await c?.close();
});

const cairn = (...args: string[]) => runCairn(args, { env: c.env() });

test("put, get, del, post, tail and status work through the cluster file (https with the cluster CA)", async () => {
  const cfg = ["--config", c.file];
  const put = await cairn("put", "greeting", "hello", ...cfg);
  expect(put.code).toBe(0);
  expect(JSON.parse(put.out).version).toBeGreaterThan(0);
  const get = await cairn("get", "greeting", ...cfg);
  expect(get.code).toBe(0);
  expect(get.out).toBe("hello");
  const post = await cairn("post", '{"order":42}', "--tag", "orders", ...cfg);
  expect(post.code).toBe(0);
  const tail = await cairn("tail", "--tag", "orders", ...cfg);
  expect(tail.code).toBe(0);
  const lines = tail.out.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.map((l) => l.data)).toEqual([{ order: 42 }]);
  const del = await cairn("del", "greeting", ...cfg);
  expect(del.code).toBe(0);
  const gone = await cairn("get", "greeting", ...cfg);
  expect(gone.code).toBe(1);
  expect(gone.err).toContain("404");
  const status = await cairn("status", "--json", ...cfg);
  expect(JSON.parse(status.out).members.length).toBe(3);
}, 60_000);

test("leader transfer moves leadership; bench reports throughput; usage errors exit 2 with a message", async () => {
  const before = await c.leader();
  const to = ["n1", "n2", "n3"].find((id) => id !== before)!;
  const t = await cairn("leader", "transfer", "--to", to, "--url", c.api(before), "--ca", `${c.dir}/ca/ca.pem`);
  expect(t.code).toBe(0);
  expect(JSON.parse(t.out).to).toBe(to);
  expect(await c.leader()).toBe(to);
  const b = await cairn("bench", "--clients", "4", "--duration", "1", "--config", c.file);
  expect(b.code).toBe(0);
  const r = JSON.parse(b.out);
  expect(r.writes).toBeGreaterThan(0);
  expect(r.latencyMs.p99).toBeGreaterThan(0);
  const bad = await cairn("put", "only-a-key", "--config", c.file);
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("cairn put KEY VALUE");
  const nowhere = await cairn("status");
  expect(nowhere.code).toBe(2);
  expect(nowhere.err).toContain("--url URL");
  const help = await cairn("help", "serve");
  expect(help.out).toContain("cairn serve --config FILE");
  const v = await cairn("version");
  expect(v.out).toMatch(/^cairn \d+\.\d+\.\d+/);
}, 60_000);

/**
 * Pre-commit validators (issue 12): real HTTP validators on loopback
 * (Bun.serve in this process), real CairnNodes with the API app over them.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { createApp } from "../../src/api/app.ts";
import { Validators } from "../../src/api/validators.ts";
import type { ValidatorConfig } from "../../src/discovery/load.ts";
import { VALIDATOR_DEFAULTS } from "../../src/discovery/schema.ts";
import type { CairnNode } from "../../src/node/node.ts";
import { Logger } from "../../src/util/log.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { freePort, waitFor } from "../helpers/ports.ts";

// deno-lint-ignore no-explicit-any
type Seen = { path: string; body: any };
const seen: Seen[] = [];
/** Calls to /hang wait here until released. */
const hanging: (() => void)[] = [];
let server: ReturnType<typeof Bun.serve>;
let base: string;
let cluster: InprocCluster;
let validators: Validators;
let app: ReturnType<typeof createApp>;
const logs: string[] = [];

beforeAll(async () => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      seen.push({ path, body: await req.json() });
      if (path === "/accept") return Response.json({ ok: true });
      if (path === "/reject") return Response.json({ ok: false, reason: "price must be positive" });
      if (path === "/status500") return new Response("boom", { status: 500 });
      if (path === "/huge") return new Response("x".repeat(200_000));
      if (path === "/hang") {
        await new Promise<void>((r) => hanging.push(r));
        return Response.json({ ok: true });
      }
      return new Response("no such path", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
  const logger = new Logger({ level: "info", sink: (l) => logs.push(l) });
  validators = new Validators({ validators: [], cluster: "test", nodeId: "shared", log: logger });
  cluster = await inprocCluster(["n1", "n2", "n3"], { node: { beforePropose: (b) => validators.check(b) } });
  await Promise.all(["n1", "n2", "n3"].map((id) => cluster.start(id)));
  const leader = await cluster.leader();
  await waitFor("leader ready", () => leader.readiness().ready, 15_000);
  app = createApp({ node: leader, logger, version: "test" });
});

afterAll(async () => {
  for (const r of hanging) r();
  await cluster?.close();
  await server?.stop(true);
});

const v = (path: string, more: Partial<ValidatorConfig> = {}): ValidatorConfig => ({ ...VALIDATOR_DEFAULTS, url: `${base}${path}`, tags: ["orders"], ...more });

function post(body: unknown, a = app): Promise<Response> {
  return Promise.resolve(a.request("/changes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }));
}

const order = (n: number) => ({ data: { n }, tags: ["orders"] });

test("a write a validator accepts is committed, and the validator got the change data, tags and an id", async () => {
  validators.update([v("/accept")]);
  seen.length = 0;
  const res = await post(order(1));
  expect(res.status).toBe(201);
  expect(seen.length).toBe(1);
  const b = seen[0]!.body;
  expect(b.op).toBe("changes");
  expect(b.tags).toEqual(["orders"]);
  expect(b.items).toEqual([{ data: { n: 1 }, tags: ["orders"] }]);
  expect(typeof b.id).toBe("string");
  expect(b.cluster).toBe("test");
});

test("a rejecting validator gives the client 422 with its reason in the JSON error shape; nothing is committed", async () => {
  validators.update([v("/accept"), v("/reject")]);
  const before = (await cluster.leader()).fsm.feedState().last;
  const res = await post([order(2), { data: 3 }]);
  expect(res.status).toBe(422);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe("rejected");
  expect(body.error.message).toContain("price must be positive");
  expect(body.error.message).toContain(`${base}/reject`);
  expect((await cluster.leader()).fsm.feedState().last).toBe(before);
});

test("a write without a matching tag is not sent to the validator", async () => {
  validators.update([v("/reject")]);
  seen.length = 0;
  expect((await post({ data: 1, tags: ["other"] })).status).toBe(201);
  expect((await post({ data: 1 })).status).toBe(201);
  expect(seen.length).toBe(0);
});

test("key-value writes carry the tag kv; '*' matches every write", async () => {
  validators.update([v("/reject", { tags: ["kv"] })]);
  const put = await app.request("/kv/a", { method: "PUT", body: "x", headers: { "content-type": "text/plain" } });
  expect(put.status).toBe(422);
  expect((await app.request("/kv/a", { method: "DELETE" })).status).toBe(422);
  validators.update([v("/accept", { tags: ["*"] })]);
  seen.length = 0;
  expect((await app.request("/kv/a", { method: "PUT", body: "x", headers: { "content-type": "text/plain" } })).status).toBe(200);
  expect(seen[0]!.body).toMatchObject({ op: "put", key: "a", value: Buffer.from("x").toString("base64"), contentType: "text/plain", tags: ["kv"] });
});

test("a validator slower than its timeoutMs rejects the write with the reason; with onError accept it goes through", async () => {
  validators.update([v("/hang", { timeoutMs: 200 })]);
  const t0 = performance.now();
  const res = await post(order(4));
  expect(res.status).toBe(422);
  expect(((await res.json()) as { error: { message: string } }).error.message).toContain("no answer within its timeoutMs of 200 ms");
  expect(performance.now() - t0).toBeLessThan(5000);
  validators.update([v("/hang", { timeoutMs: 200, onError: "accept" })]);
  expect((await post(order(5))).status).toBe(201);
  for (const r of hanging.splice(0)) r();
});

test("a validator that is down (connection refused), answers 500 or too much rejects; onError accept lets it through", async () => {
  const down = `http://127.0.0.1:${await freePort()}/v`;
  validators.update([{ ...v("/x"), url: down }]);
  const res = await post(order(6));
  expect(res.status).toBe(422);
  expect(((await res.json()) as { error: { message: string } }).error.message).toContain("cannot reach it");
  validators.update([v("/status500")]);
  expect(((await (await post(order(7))).json()) as { error: { message: string } }).error.message).toContain("HTTP 500");
  validators.update([v("/huge")]);
  expect(((await (await post(order(8))).json()) as { error: { message: string } }).error.message).toContain("over 65536 bytes");
  validators.update([{ ...v("/x"), url: down, onError: "accept" }]);
  expect((await post(order(9))).status).toBe(201);
});

test("a write over the validator's bodyBytesMax is not sent and counts as a failure", async () => {
  validators.update([v("/accept", { bodyBytesMax: 1024 })]);
  seen.length = 0;
  const res = await post({ data: "y".repeat(2000), tags: ["orders"] });
  expect(res.status).toBe(422);
  expect(((await res.json()) as { error: { message: string } }).error.message).toContain("over this validator's bodyBytesMax of 1024");
  expect(seen.length).toBe(0);
});

test("over concurrencyMax calls in flight: 503 with Retry-After, and the slot comes back", async () => {
  validators.update([v("/hang", { concurrencyMax: 2, timeoutMs: 5000 })]);
  const held = [post(order(10)), post(order(11))];
  await waitFor("two calls hang", () => hanging.length === 2);
  const over = await post(order(12));
  expect(over.status).toBe(503);
  expect(over.headers.get("retry-after")).toBe("1");
  for (const r of hanging.splice(0)) r();
  expect((await Promise.all(held)).map((r) => r.status)).toEqual([201, 201]);
  validators.update([v("/accept", { concurrencyMax: 2 })]);
  expect((await post(order(13))).status).toBe(201);
});

test("while a validator hangs, a flood of writes without its tags is unaffected", async () => {
  validators.update([v("/hang", { timeoutMs: 5000 })]);
  const stuck = post(order(14));
  await waitFor("the validated write hangs", () => hanging.length === 1);
  const lat: number[] = [];
  const flood = Array.from({ length: 200 }, async (_, i) => {
    const t0 = performance.now();
    const r = await post({ data: i, tags: ["fast"] });
    lat.push(performance.now() - t0);
    return r.status;
  });
  const statuses = await Promise.all(flood);
  expect(statuses.every((s) => s === 201)).toBe(true);
  lat.sort((a, b) => a - b);
  const p99 = lat[Math.floor(lat.length * 0.99)]!;
  console.log(`flood of 200 untagged writes while a validator hangs: p50 ${lat[100]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${lat.at(-1)!.toFixed(1)} ms`);
  expect(lat.at(-1)!).toBeLessThan(4000); // the hanging validator would hold them its 5 s
  expect(hanging.length).toBe(1);
  for (const r of hanging.splice(0)) r();
  expect((await stuck).status).toBe(201);
});

test("a write sent to a follower is validated once, at the leader", async () => {
  validators.update([v("/accept")]);
  const leader = await cluster.leader();
  const follower = [...cluster.nodes.values()].find((n: CairnNode) => n !== leader)!;
  const fapp = createApp({ node: follower, logger: new Logger({ level: "error", sink: () => {} }), version: "test" });
  seen.length = 0;
  expect((await post(order(15), fapp)).status).toBe(201);
  expect(seen.length).toBe(1);
  validators.update([v("/reject")]);
  const res = await post(order(16), fapp);
  expect(res.status).toBe(422);
  expect(((await res.json()) as { error: { message: string } }).error.message).toContain("price must be positive");
});

test("validators work the same under Deno (accept, reject with reason, timeout, connection refused)", async () => {
  const root = join(import.meta.dir, "..", "..");
  const urls = [`${base}/accept`, `${base}/reject`, `${base}/hang`, `http://127.0.0.1:${await freePort()}/v`];
  const child = Bun.spawn([join(root, "node_modules/.bin/deno"), "run", "-A", join(import.meta.dir, "deno-validators.ts"), ...urls], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  for (const r of hanging.splice(0)) r();
  expect(code, err).toBe(0);
  const r = JSON.parse(out) as string[];
  expect(r[0]).toBe("accepted");
  expect(r[1]).toContain("price must be positive");
  expect(r[2]).toContain("no answer within its timeoutMs of 300 ms");
  expect(r[3]).toContain("cannot reach it");
}, 60_000);

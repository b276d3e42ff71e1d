/**
 * cairn/client against real clusters (dist/cairn from `cairn init`, TLS,
 * tokens): typed errors, leader following when the leader is killed, and
 * follow() resuming after a node restart and after a 410.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import {
  BadRequestError,
  CairnClient,
  ConflictError,
  GoneError,
  NotFoundError,
  UnauthorizedError,
  UnavailableError,
  type Change,
  type LoadedCheckpoint,
} from "../../src/client/index.ts";
import { LockHeldError } from "../../src/platform/sqlite.ts";
import { E2ECluster } from "../e2e/harness.ts";
import { freePort, waitFor } from "../helpers/ports.ts";

let cluster: E2ECluster | null = null;
const clients: CairnClient[] = [];

let testNo = 0;
afterEach(async () => {
  testNo++;
  if (process.env.E2E_LOGS) cluster?.dumpLogs(join(process.env.E2E_LOGS, `client-${testNo}`));
  for (const c of clients.splice(0)) c.close();
  await cluster?.close();
  cluster = null;
});

async function up(n: number, args: string[] = []): Promise<E2ECluster> {
  const c = await E2ECluster.init(n);
  cluster = c;
  for (let i = 1; i <= n; i++) c.start(`n${i}`, { args });
  // Every node a voter before a test stops or kills some (a learner does not count for quorum).
  await c.waitVoters(n, 60_000);
  return c;
}

function clientOf(c: E2ECluster, opts: Partial<ConstructorParameters<typeof CairnClient>[0]> = {}): CairnClient {
  const cl = new CairnClient({ cluster: c.file, token: c.token, ...opts });
  clients.push(cl);
  return cl;
}

describe("cairn/client", () => {
  test("cairn/client is the package's export of src/client", async () => {
    const mod = await import("cairn/client");
    expect(mod.CairnClient).toBe(CairnClient);
    expect(mod.GoneError).toBe(GoneError);
  });

  test("feed, kv, txn and status calls answer typed results, and failures are typed errors", async () => {
    const c = await up(3);
    const cl = clientOf(c);
    const p = await cl.post({ hello: 1 }, { tags: ["t"] });
    expect(p.index).toBeGreaterThan(0);
    expect((await cl.getChange(p.index)).data).toEqual({ hello: 1 });
    const b = await cl.postBatch([{ data: 1 }, { data: 2 }]);
    expect(b.last - b.index).toBe(1);
    expect((await cl.listChanges({ since: 0, tags: ["t"] })).changes.map((ch) => ch.data)).toEqual([{ hello: 1 }]);

    const w = await cl.put("cfg/a", { x: 1 }, { ifNoneMatch: "*" });
    expect((await cl.get("cfg/a"))!.json()).toEqual({ x: 1 });
    expect(await cl.get("cfg/none")).toBeNull();
    const conflict = await cl.put("cfg/a", { x: 2 }, { ifMatch: w.version + 5 }).catch((e) => e);
    expect(conflict).toBeInstanceOf(ConflictError);
    expect((conflict as ConflictError).version).toBe(w.version);
    expect(await cl.put("cfg/a", { x: 3 }, { ifNoneMatch: "*" }).catch((e) => e)).toBeInstanceOf(ConflictError);
    await cl.put("cfg/a", { x: 2 }, { ifMatch: w.version });
    expect((await cl.list({ prefix: "cfg/" })).items.map((i) => i.value)).toEqual([{ x: 2 }]);
    const t = await cl.txn({ compare: [{ key: "cfg/a", target: "exists", value: true }], success: [{ op: "get", key: "cfg/a" }] });
    expect(t.succeeded).toBe(true);
    await cl.del("cfg/a");
    expect(await cl.del("cfg/a").catch((e) => e)).toBeInstanceOf(NotFoundError);

    // The same Idempotency-Key twice: applied once, the second answer is the first one replayed.
    const k1 = await cl.post({ once: true }, { idempotencyKey: "k-1" });
    const k2 = await cl.post({ once: true }, { idempotencyKey: "k-1" });
    expect(k2.index).toBe(k1.index);
    expect(k2.replayed).toBe(true);

    expect(await cl.postBatch([]).catch((e) => e)).toBeInstanceOf(BadRequestError);
    expect(await cl.getChange(1e9).catch((e) => e)).toBeInstanceOf(NotFoundError);
    const bad = clientOf(c, { token: "cairn_wrong" });
    expect(await bad.status().catch((e) => e)).toBeInstanceOf(UnauthorizedError);
    const st = await cl.status();
    expect(st.leader?.id).toMatch(/^n\d$/);
    expect(st.auth).toBe("tokens");

    // No quorum: 503s, retried until the deadline, then an UnavailableError carrying the last one.
    const lead = await c.leader();
    for (const id of ["n1", "n2", "n3"].filter((x) => x !== lead).slice(0, 2)) await c.signal(id, "SIGKILL");
    const noQuorum = await cl.post({ x: 1 }, { timeoutMs: 3000 }).catch((e) => e);
    expect(noQuorum).toBeInstanceOf(UnavailableError);
    expect((noQuorum as UnavailableError).status === 503 || (noQuorum as UnavailableError).status === 0).toBe(true);

    const dead = new CairnClient({ urls: [`http://127.0.0.1:${await freePort()}`], timeoutMs: 800 });
    clients.push(dead);
    const t0 = Date.now();
    expect(await dead.post({ x: 1 }).catch((e) => e)).toBeInstanceOf(UnavailableError);
    expect(Date.now() - t0).toBeLessThan(3000);
  }, 90_000);

  test("writes go on when the leader is killed: the client moves to another node, and each write is applied once", async () => {
    const c = await up(3);
    const lead = await c.leader();
    // The leader first in the list, so the client is talking to it when it dies.
    const f = c.readFile();
    const cl = clientOf(c, { cluster: undefined, urls: [c.api(lead), ...f.nodes.filter((n) => n.id !== lead).map((n) => n.api)], ca: c.ca().cert, timeoutMs: 45_000 }); // 2 cores shared by many tests: elections can be slow
    const indexes: number[] = [];
    for (let i = 0; i < 20; i++) indexes.push((await cl.post({ i })).index);
    expect(cl.transport.current).toBe(c.api(lead));
    await c.signal(lead, "SIGKILL");
    const killed = Date.now();
    indexes.push((await cl.post({ i: 20 })).index);
    const gapMs = Date.now() - killed;
    for (let i = 21; i < 40; i++) indexes.push((await cl.post({ i })).index);
    console.log(`leader killed: the first write after it took ${gapMs} ms (election and retries included)`);
    expect(cl.transport.current).not.toBe(c.api(lead));
    // Then it moves on to the new leader by itself.
    const newLead = await c.leader(20_000, f.nodes.map((n) => n.id).filter((id) => id !== lead));
    await waitFor("the client to follow the new leader", () => cl.transport.current === c.api(newLead), 15_000);
    const other = f.nodes.find((n) => n.id !== lead)!.id;
    const feed = await waitFor("the feed with 40 changes", async () => {
      const fd = await c.feed(other);
      return fd.length >= 40 ? fd : undefined;
    }, 20_000);
    expect(feed.map((ch) => ch.data.i)).toEqual([...Array(40).keys()]);
    expect(new Set(indexes).size).toBe(40);
  }, 90_000);

  test("follow() yields every change in order across a restart of the node it reads from", async () => {
    const c = await up(3);
    const cl = clientOf(c, { cluster: undefined, urls: [c.api("n1")], ca: c.ca().cert });
    const writer = clientOf(c);
    const seen: Change[] = [];
    const ac = new AbortController();
    const retries: Error[] = [];
    const run = (async () => {
      for await (const ch of cl.follow({ since: 0, tags: ["f"], blockSec: 2, signal: ac.signal, onRetry: (e) => retries.push(e) })) {
        seen.push(ch);
      }
    })().catch((e) => (ac.signal.aborted ? undefined : Promise.reject(e)));
    for (let i = 0; i < 10; i++) await writer.post({ i }, { tags: ["f"] });
    await waitFor("10 changes followed", () => seen.length >= 10, 20_000);
    await c.stop("n1");
    for (let i = 10; i < 20; i++) await writer.post({ i }, { tags: ["f"] });
    await writer.post({ other: true }, { tags: ["g"] });
    c.start("n1");
    for (let i = 20; i < 25; i++) await writer.post({ i }, { tags: ["f"] });
    await waitFor("25 changes followed", () => seen.length >= 25, 30_000);
    ac.abort();
    await run;
    expect(seen.map((ch) => (ch.data as { i: number }).i)).toEqual([...Array(25).keys()]);
  }, 120_000);

  test("follow() below the retained feed loads the checkpoint it is pointed to, then resumes after its index", async () => {
    const c = await up(3, ["--retain-changes", "5", "--retain-age", "0", "--checkpoint-trailing", "0"]);
    const cl = clientOf(c);
    for (let i = 0; i < 30; i++) await cl.post({ i });
    await cl.put("state/a", { v: 1 });
    await cl.createCheckpoint();
    // Trimming runs after the checkpoint: wait until the feed below it is gone.
    await waitFor("a 410 for since=0", async () => (await cl.listChanges({ since: 0 }).catch((e) => e)) instanceof GoneError, 20_000);
    const after = await cl.post({ i: "after" });
    let loaded: { id: string; index: number; kv: Record<string, unknown> } | null = null;
    const seen: Change[] = [];
    for await (const ch of cl.follow({
      since: 0,
      blockSec: 1,
      onCheckpoint: (cp: LoadedCheckpoint) => {
        const kv: Record<string, unknown> = {};
        for (const r of cp.kv()) kv[r.key] = JSON.parse(new TextDecoder().decode(r.value));
        loaded = { id: cp.id, index: cp.index, kv };
      },
    })) {
      seen.push(ch);
      if (ch.index >= after.index) break;
    }
    expect(loaded).not.toBeNull();
    expect(loaded!.kv).toEqual({ "state/a": { v: 1 } });
    expect(seen[0]!.index).toBe(loaded!.index + 1);
    expect(seen.at(-1)!.data).toEqual({ i: "after" });
    // Without onCheckpoint the 410 reaches the application.
    const gone = await (async () => {
      for await (const _ of cl.follow({ since: 0 })) return null;
    })().catch((e) => e);
    expect(gone).toBeInstanceOf(GoneError);
    expect((gone as GoneError).checkpoint?.index).toBe(loaded!.index);
  }, 120_000);
});

test("the outbox delivers kv writes too, marks a write the cluster refuses for good as failed, and goes on with the next", async () => {
  const c = await up(3);
  const cl = clientOf(c);
  const delivered: { seq: number; index: number }[] = [];
  const failed: { seq: number; status: number }[] = [];
  const box = await cl.outbox({ path: join(c.dir, "kv-outbox.db"), onDelivered: (d) => delivered.push(d), onFailed: (f) => failed.push(f) });
  const a = await box.put("o/a", { v: 1 }, { ifNoneMatch: "*" });
  const b = await box.put("o/a", { v: 2 }, { ifNoneMatch: "*" }); // exists by then: 412
  const p = await box.post({ after: "the refused one" });
  const d = await box.del("o/missing"); // 404
  const t = await box.put("o/t", "plain text", { contentType: "text/plain" });
  await box.flush({ timeoutMs: 20_000 });
  expect(box.status()).toMatchObject({ pending: 0, delivered: 3, failed: 2, lastSeq: 5 });
  expect(failed).toEqual([{ seq: b.seq, status: 412, error: expect.any(String) } as never, { seq: d.seq, status: 404, error: expect.any(String) } as never]);
  expect(delivered.map((x) => x.seq)).toEqual([a.seq, p.seq, t.seq]);
  expect(box.entry(b.seq)).toMatchObject({ state: "failed" });
  expect((await cl.get("o/a"))!.json()).toEqual({ v: 1 });
  expect((await cl.get("o/t"))!.text()).toBe("plain text");
  expect((await cl.getChange(box.entry(p.seq)!.index!)).data).toEqual({ after: "the refused one" });
  // A second process (or a second open) cannot own the same outbox file.
  expect(await cl.outbox({ path: join(c.dir, "kv-outbox.db") }).catch((e) => e)).toBeInstanceOf(LockHeldError);
  await box.close();

  // Settled writes are pruned to keepSettledMax (checked every 20 batches): the file stays bounded.
  const small = await cl.outbox({ path: join(c.dir, "small-outbox.db"), batchItemsMax: 1, keepSettledMax: 5 });
  for (let i = 0; i < 30; i++) await small.post({ i });
  await small.flush({ timeoutMs: 30_000 });
  expect(small.status()).toMatchObject({ pending: 0, delivered: 15, lastSeq: 30 });
  expect(small.entry(1)).toBeNull();
  expect(small.entry(30)!.state).toBe("delivered");
  await small.close();
}, 90_000);

const ROOT = join(import.meta.dir, "..", "..");

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

test("the client runs under Deno (with the outbox) and under Node 20+ from a bundle (TLS with the cluster CA, token)", async () => {
  const c = await up(3);
  const env = { CAIRN_CLUSTER: c.file, CAIRN_TOKEN: c.token };
  const deno = await run(join(ROOT, "node_modules", ".bin", "deno"), ["run", "-A", "test/client/smoke.ts"], { ...env, SMOKE_RUNTIME: "deno", SMOKE_OUTBOX: join(c.dir, "deno-outbox.db") });
  expect(deno.out).toContain("smoke ok");
  expect(deno.code).toBe(0);
  const bundle = join(c.dir, "smoke.mjs");
  const built = await run(process.execPath, ["build", "test/client/smoke.ts", "--target=node", "--outfile", bundle], {});
  expect(built.code).toBe(0);
  // Node 20 has no node:sqlite: the outbox part runs only where it exists (Node 22.5+).
  const nodeMajor = Number(spawnSync("node", ["--version"], { encoding: "utf8" }).stdout.replace(/^v/, "").split(".")[0]);
  const node = await run("node", [bundle], { ...env, SMOKE_RUNTIME: "node", ...(nodeMajor >= 23 ? { SMOKE_OUTBOX: join(c.dir, "node-outbox.db") } : {}) });
  expect(node.out).toContain("smoke ok");
  expect(node.code).toBe(0);
}, 120_000);

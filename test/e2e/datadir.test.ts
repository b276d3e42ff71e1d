/**
 * The data directory's integrity (issue 8), against the built binary: one
 * process per data directory (an exclusive lock that dies with its process),
 * a damaged database refused at start, a database error while running ends
 * the process (crash-only, one log line), no temporary file left by a
 * checkpoint that had nothing new, and checkpoint files verified against their
 * checksum before they are used.
 */
import { afterEach, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, copyFileSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { waitFor } from "../helpers/ports.ts";
import { cli, writeBulk } from "./checkpoint-helpers.ts";
import { BINARY, E2ECluster, ROOT } from "./harness.ts";

const clusters: E2ECluster[] = [];
let testNo = 0;
afterEach(async () => {
  testNo++;
  for (const [i, c] of clusters.splice(0).entries()) {
    if (process.env.E2E_LOGS) c.dumpLogs(join(process.env.E2E_LOGS, `datadir-${testNo}-${i}`));
    await c.close();
  }
});

type Runtime = "bun" | "deno";
const DENO = join(ROOT, "node_modules", ".bin", "deno");

async function single(runtime: Runtime = "bun"): Promise<E2ECluster> {
  const c = await E2ECluster.init(1);
  clusters.push(c);
  c.start("n1", { runtime });
  await waitFor("n1 ready", async () => (await c.get("n1", "/ready").catch(() => null))?.status === 200, 20_000, 50);
  return c;
}

/** `cairn serve` for `id` as a separate process, run to its end (killed after timeoutMs). */
async function serveToEnd(c: E2ECluster, id: string, runtime: Runtime = "bun", timeoutMs = 15_000): Promise<{ code: number | null; out: string; ms: number }> {
  const t0 = performance.now();
  const args = ["serve", "--config", c.file, "--id", id, "--data", c.dataDir(id)];
  const child =
    runtime === "deno"
      ? spawn(DENO, ["run", "-A", join(ROOT, "src", "main.ts"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
      : spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((res) => child.once("exit", (x) => res(x)));
  clearTimeout(timer);
  return { code, out, ms: performance.now() - t0 };
}

async function put(c: E2ECluster, id: string, key: string, value: string): Promise<number> {
  const r = await c.get(id, `/kv/${key}`, { method: "PUT", headers: { "content-type": "text/plain" }, body: value, signal: AbortSignal.timeout(5000) });
  await r.arrayBuffer();
  return r.status;
}

/** Random bytes over pages [from, to) of a database file (page size from its header). */
function scribble(file: string, from: number, to: number): void {
  const pageSize = new DataView(readFileSync(file).buffer.slice(16, 18)).getUint16(0) || 4096;
  const fd = openSync(file, "r+");
  try {
    for (let p = from; p < to; p++) writeSync(fd, crypto.getRandomValues(new Uint8Array(pageSize)), 0, pageSize, p * pageSize);
  } finally {
    closeSync(fd);
  }
}

for (const [first, second] of [["bun", "bun"], ["bun", "deno"], ["deno", "bun"]] as const) {
  test(`a second serve (${second}) on the same data directory as a running one (${first}) is refused with the first one's PID, the first keeps serving; after kill -9 of the first a restart works`, async () => {
    const c = await single(first);
    expect(await put(c, "n1", "before", "1")).toBeLessThan(300);
    const pid = c.procs.get("n1")!.child.pid!;

    const refused = await serveToEnd(c, "n1", second);
    expect(refused.code).toBe(1);
    expect(refused.out).toContain(`in use by another cairn process (PID ${pid}`);
    expect(refused.out).toContain("Stop that process first");

    // The first one was not disturbed: it still takes writes and serves them.
    expect(await put(c, "n1", "after", "2")).toBeLessThan(300);
    expect((await c.json("n1", "/kv/after")).status).toBe(200);
    expect(c.logs("n1").some((l) => l.includes("UNIQUE constraint") || l.includes("removed partial"))).toBe(false);

    // kill -9 leaves no stale lock: the restart takes the directory and serves the data.
    await c.signal("n1", "SIGKILL");
    c.start("n1", { runtime: second });
    await waitFor("n1 ready after kill -9", async () => (await c.get("n1", "/ready").catch(() => null))?.status === 200, 20_000, 50);
    expect((await c.json("n1", "/kv/after")).status).toBe(200);
    expect(await put(c, "n1", "restarted", "3")).toBeLessThan(300);
  }, 90_000);
}

for (const runtime of ["bun", "deno"] as const) {
  test(`a damaged page in cairn.db of a stopped node: start (${runtime}) is refused at once with what to do, exit 1`, async () => {
    const c = await single();
    for (let i = 0; i < 200; i++) expect(await put(c, "n1", `k/${i}`, `value ${i} `.repeat(50))).toBeLessThan(300);
    expect(await c.stop("n1")).toBe(0);
    const file = join(c.dataDir("n1"), "cairn.db");
    expect(existsSync(`${file}-wal`) && statSync(`${file}-wal`).size > 0).toBe(false);
    // A page of the key-value table: nothing reads it at start, only a check of the whole file finds it.
    const db = new Database(file, { readonly: true });
    const root = Number((db.query("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'kv'").get() as { rootpage: number }).rootpage);
    db.close();
    scribble(file, root - 1, root);

    const r = await serveToEnd(c, "n1", runtime);
    expect(r.code).toBe(1);
    expect(r.out).toContain("is damaged");
    expect(r.out).toContain("quick_check");
    expect(r.out).toContain("cairn restore");
    expect(r.out).toContain("empty data directory");
    expect(r.out).not.toContain("API listening");
    expect(r.ms).toBeLessThan(10_000);
  }, 90_000);
}

for (const [runtime, reads] of [["bun", true], ["bun", false], ["deno", false]] as const) {
  test(`a database damaged under a running node (${runtime}, ${reads ? "reads and writes" : "writes only: the Raft loop's own store writes"}): the process exits 1 within seconds, with one fatal line and no log storm`, async () => {
    const c = await single(runtime);
    // Larger than SQLite's page cache (2 MB), so that reads go to the file.
    await writeBulk(c, { via: () => "n1", count: 800, bytes: 8192, parallel: 8 });
    const file = join(c.dataDir("n1"), "cairn.db");
    const pages = Math.floor(statSync(file).size / 4096);
    expect(pages).toBeGreaterThan(1000);
    const before = c.logs("n1").length;
    scribble(file, 1, pages);
    const t0 = performance.now();
    // Reads of keys not in the cache, and writes, until the process is gone.
    const load = (async () => {
      for (let i = 0; c.procs.has("n1") && performance.now() - t0 < 20_000; i++) {
        if (reads) await c.get("n1", `/kv/big/${String(i % 800).padStart(5, "0")}?consistency=stale`, { signal: AbortSignal.timeout(2000) }).then((r) => r.arrayBuffer()).catch(() => null);
        await put(c, "n1", `w/${i}`, "x".repeat(1000)).catch(() => null);
      }
    })();
    const code = await c.exitOf("n1", 20_000);
    await load;
    expect(code).toBe(1);
    const after = c.lastRunLogs("n1").slice(before);
    const fatal = after.filter((l) => l.includes('"fatal: '));
    expect(fatal.length).toBe(1);
    expect(fatal[0]).toContain("damaged");
    expect(after.length).toBeLessThan(40);
  }, 120_000);
}

test("POST /admin/checkpoint and cairn backup with nothing new written leave no temporary file", async () => {
  const c = await single();
  for (let i = 0; i < 20; i++) expect(await put(c, "n1", `k/${i}`, `v${i}`)).toBeLessThan(300);
  const dir = join(c.dataDir("n1"), "checkpoints");
  const tmps = () => readdirSync(dir).filter((f) => f.includes(".tmp"));
  const a = await c.json("n1", "/admin/checkpoint", { method: "POST" });
  expect(a.status).toBe(200);
  const b = await c.json("n1", "/admin/checkpoint", { method: "POST" });
  expect(b.status).toBe(200);
  expect(b.body.checkpoint.id).toBe(a.body.checkpoint.id);
  const out = join(c.dir, "backup.db");
  const ca = join(c.dir, "ca", "ca.pem");
  for (let i = 0; i < 2; i++) expect((await cli(["backup", "--config", c.file, "--ca", ca, "--out", out, "--token", c.token])).code).toBe(0);
  expect(tmps()).toEqual([]);
  expect(existsSync(`${out}.part`)).toBe(false);
}, 90_000);

test("a checkpoint file with a flipped byte is refused: by restore (nothing installed), by GET /checkpoints/ID (discarded), by recover", async () => {
  const c = await single();
  for (let i = 0; i < 50; i++) expect(await put(c, "n1", `k/${i}`, `v${i}`)).toBeLessThan(300);
  const out = join(c.dir, "backup.db");
  const ca = join(c.dir, "ca", "ca.pem");
  const b = await cli(["backup", "--config", c.file, "--ca", ca, "--out", out, "--token", c.token]);
  expect(b.code).toBe(0);
  expect(existsSync(`${out}.sha256`)).toBe(true);

  // The intact backup restores (its checksum is beside it), and again: restoring does not change its bytes.
  for (const n of [1, 2]) {
    const good = join(c.dir, `restored-good-${n}`);
    const ok = await cli(["restore", "--from", out, "--data", good, "--id", "n1"]);
    expect(ok.stderr).toContain("restored");
    expect(ok.code).toBe(0);
  }
  expect(readdirSync(c.dir).filter((f) => f.startsWith("backup.db"))).toEqual(["backup.db", "backup.db.sha256"]);

  const flip = (file: string, at: number) => {
    const fd = openSync(file, "r+");
    const buf = new Uint8Array(1);
    readSync(fd, buf, 0, 1, at);
    buf[0] = buf[0]! ^ 0x01;
    writeSync(fd, buf, 0, 1, at);
    closeSync(fd);
  };
  flip(out, Math.floor(statSync(out).size / 2));
  const bad = join(c.dir, "restored-bad");
  const r = await cli(["restore", "--from", out, "--data", bad, "--id", "n1"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("failed verification: its SHA-256 is");
  expect(r.stderr).toContain("nothing was restored");
  expect(existsSync(join(bad, "cairn.db"))).toBe(false);

  // Without any checksum to check against, restore refuses too (it says how to give one).
  const bare = join(c.dir, "bare.db");
  copyFileSync(out, bare);
  const nr = await cli(["restore", "--from", bare, "--data", join(c.dir, "restored-bare"), "--id", "n1"]);
  expect(nr.code).not.toBe(0);
  expect(nr.stderr).toContain("--sha256");
  // A checkpoint file of a data directory is checked against the manifest beside it, or against --sha256.
  const ckpts = join(c.dataDir("n1"), "checkpoints");
  const intact = readdirSync(ckpts).find((f) => /^ckpt-\d+\.db$/.test(f))!;
  expect((await cli(["restore", "--from", join(ckpts, intact), "--data", join(c.dir, "restored-ckpt"), "--id", "n1"])).code).toBe(0);
  const manifest = JSON.parse(readFileSync(join(ckpts, intact.replace(/\.db$/, ".json")), "utf8")) as { sha256: string };
  const wrong = manifest.sha256.replace(/^./, (ch) => (ch === "0" ? "1" : "0"));
  const bad2 = await cli(["restore", "--from", join(ckpts, intact), "--data", join(c.dir, "restored-wrong"), "--id", "n1", "--sha256", wrong]);
  expect(bad2.code).toBe(1);
  expect(bad2.stderr).toContain("failed verification");
  expect(existsSync(join(c.dir, "restored-wrong", "cairn.db"))).toBe(false);

  // On the node: a damaged checkpoint file is not served, and is discarded.
  const list = (await c.json("n1", "/checkpoints")).body.checkpoints as { id: string }[];
  const id = list[0]!.id;
  const file = join(c.dataDir("n1"), "checkpoints", `${id}.db`);
  flip(file, Math.floor(statSync(file).size / 2));
  const g = await c.json("n1", `/checkpoints/${id}`);
  expect(g.status).toBe(500);
  expect(g.body.error?.code ?? g.body.code).toBe("checkpoint_damaged");
  expect(((await c.json("n1", "/checkpoints")).body.checkpoints as { id: string }[]).some((m) => m.id === id)).toBe(false);
  expect(existsSync(file)).toBe(false);

  // recover discards a damaged checkpoint rather than handing it to the nodes that join.
  const m2 = (await c.json("n1", "/admin/checkpoint", { method: "POST" })).body.checkpoint as { id: string };
  expect(await c.stop("n1")).toBe(0);
  const file2 = join(c.dataDir("n1"), "checkpoints", `${m2.id}.db`);
  flip(file2, Math.floor(statSync(file2).size / 2));
  const rc = await cli(["recover", "--data", c.dataDir("n1"), "--id", "n1", "--yes"]);
  expect(rc.code).toBe(0);
  expect(rc.stderr).toContain("failed verification");
  expect(existsSync(file2)).toBe(false);
}, 120_000);

test("a leader's checkpoint file with a flipped byte is refused by the follower it is sent to, discarded by the leader, rebuilt, and the follower catches up", async () => {
  const c = await E2ECluster.init(3);
  clusters.push(c);
  // The log compacted right up to the applied index: the follower that comes back needs a checkpoint.
  const args = ["--checkpoint-trailing", "0", "--checkpoint-every", "0", "--compact-every", "20"];
  for (const id of ["n1", "n2", "n3"]) c.start(id, { args });
  await c.waitVoters(3);
  const leader = await c.leader();
  const lagging = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  await c.stop(lagging);
  // Wiped: it comes back empty, and the log it needs from index 1 is compacted away, so it must be sent a checkpoint.
  rmSync(c.dataDir(lagging), { recursive: true, force: true });
  for (let i = 0; i < 40; i++) expect(await put(c, leader, `k/${i}`, `v${i}`)).toBeLessThan(300);
  // Once the stopped follower no longer counts as active, the log it would need is compacted;
  // each round writes one more entry and takes a checkpoint of it (the one the follower is sent).
  let round = 0;
  const m = await waitFor("a checkpoint that compacts the log", async () => {
    expect(await put(c, leader, `more/${round++}`, "x")).toBeLessThan(300);
    const r = await c.json(leader, "/admin/checkpoint", { method: "POST" });
    const st = await c.status(leader);
    return r.status === 200 && st.index.first > 45 ? (r.body.checkpoint as { id: string; sha256: string }) : undefined;
  }, 20_000, 200);
  const file = join(c.dataDir(leader), "checkpoints", `${m.id}.db`);
  const fd = openSync(file, "r+");
  writeSync(fd, new Uint8Array([0x5a]), 0, 1, Math.floor(statSync(file).size / 2));
  closeSync(fd);

  c.start(lagging, { args });
  await c.waitForLog(lagging, "a refused checkpoint", (l) => /failed verification/.test(l.msg ?? ""), 30_000);
  await c.waitForLog(leader, "the damaged file discarded", (l) => /failed verification: its SHA-256 is .*discarded/.test(l.msg ?? ""), 30_000);
  await waitFor(`${lagging} to catch up`, async () => (await c.json(lagging, "/kv/k/39?consistency=stale")).status === 200, 30_000, 100);
  // What the leader has now is intact (a rebuilt checkpoint at the same index has the same name).
  for (const cm of (await c.json(leader, "/checkpoints")).body.checkpoints as { id: string; sha256: string }[]) {
    const f = join(c.dataDir(leader), "checkpoints", `${cm.id}.db`);
    expect(createHash("sha256").update(readFileSync(f)).digest("hex")).toBe(cm.sha256);
  }
}, 120_000);

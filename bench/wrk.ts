/**
 * cairn and etcd side by side under the same external load generator:
 *
 *   bun run bench/wrk.ts [--tls on|off|both] [--seconds 10] [--failovers 5] [--quick] [--out bench/RESULTS.md]
 *
 * For each TLS mode (on: HTTPS clients and mutual-TLS peers for both; off:
 * plain http and plain TCP peers for both), first a 3-member etcd (Debian's
 * etcd-server, its defaults, fsync of every WAL write), then a 3-node cairn
 * (`cairn init`, SQLite synchronous FULL), one after the other, each driven
 * by Debian's `wrk` with a generated Lua script (bench/wrkrun.ts): a new key
 * per write, 200-byte values, at 1, 16, 64 and 256 connections (-t2, -t1
 * for one connection) through the leader; then writes through a follower at
 * 64, linearizable reads at 64, kill -9 failovers and (cairn) the SIGTERM
 * stepdown pause. At the end of each system's run, every acknowledged write is
 * checked on every node (see checkAcked). `--quick` (the smoke test): 1 s
 * runs, 1 and 16 connections, follower and reads at 16, one failover; it
 * writes results only with --out.
 */
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { BINARY, resultsPath, RUN_OPTIONS, Writer, waitFor, whole } from "./shared.ts";
import { startCairn, type CairnSystem } from "./cairn.ts";
import { startEtcd, type EtcdSystem } from "./etcd.ts";
import { machine, median, runFailovers, sleep, writeSection, type System } from "./lib.ts";
import { report, type Check, type Op, type Row, type SystemRun } from "./wrkreport.ts";
import { busyNote, childrenCpuMs, cpuTimes, ensureTools, runWrk, ToolsUnavailableError, type LuaRequest } from "./wrkrun.ts";

const { values: args } = parseArgs({
  options: {
    tls: { type: "string", default: "both" },
    failovers: { type: "string" },
    ...RUN_OPTIONS,
  },
});

if (!["on", "off", "both"].includes(args.tls!)) throw new Error(`--tls must be on, off or both, got ${JSON.stringify(args.tls)}`);
const QUICK = args.quick!;
const SECONDS = whole("seconds", args.seconds, QUICK ? 1 : 10, 1);
const FAILOVERS = whole("failovers", args.failovers, QUICK ? 1 : 5, 0);
const CONNECTIONS = QUICK ? [1, 16] : [1, 16, 64, 256];
/** The load of the follower and read rows (64 in the issue's table). */
const MID = QUICK ? 16 : 64;
const WARMUP_SECONDS = QUICK ? 1 : 3;
const TLS_MODES: boolean[] = args.tls === "both" ? [true, false] : [args.tls === "on"];
const OUT = resultsPath(args.out, QUICK);
const VALUE = "v".repeat(200);
const READ_KEYS = 1000;
const HEARTBEAT_MS = 100;
const log = (s: string) => console.error(`[wrk] ${s}`);
const SECTION = "cairn and etcd under wrk (bench/wrk.ts)";
const warnings: string[] = [];
const warn = (s: string) => {
  warnings.push(s);
  log(`WARNING: ${s}`);
};

type Sys = CairnSystem | EtcdSystem;

// ---------------------------------------------------------------- what wrk sends

const auth = (s: Sys): Record<string, string> => ("token" in s ? { authorization: `Bearer ${s.token}` } : {});

function luaRequest(s: Sys, op: Op, tag: string): LuaRequest {
  if (s.name === "etcd") {
    const value = Buffer.from(VALUE).toString("base64");
    return op === "read"
      ? { method: "POST", path: `"/v3/kv/range"`, body: `PRE .. b64(key) .. POST`, headers: { "content-type": "application/json" },
          consts: { PRE: '{"key":"', POST: '","serializable":false}' }, readKeys: READ_KEYS }
      : { method: "POST", path: `"/v3/kv/put"`, body: `PRE .. b64(key) .. POST`, headers: { "content-type": "application/json" },
          consts: { PRE: '{"key":"', POST: `","value":"${value}"}` } };
  }
  if (op === "read") return { method: "GET", path: `"/kv/" .. key`, body: null, headers: auth(s), readKeys: READ_KEYS };
  if (op === "put") {
    return { method: "PUT", path: `"/kv/" .. key`, body: "VALUE", headers: { ...auth(s), "content-type": "application/octet-stream" }, consts: { VALUE } };
  }
  return { method: "POST", path: `"/changes"`, body: `PRE .. key .. POST`, headers: { ...auth(s), "content-type": "application/json" },
    consts: { PRE: '{"data":{"k":"', POST: `","v":"${VALUE}"},"tags":["${tag}"]}` } };
}

async function leaderOf(s: Sys): Promise<{ leader: string; follower: string; order: string[] }> {
  const leader = await s.leader();
  const follower = s.ids.find((id) => id !== leader)!;
  return { leader, follower, order: [leader, ...s.ids.filter((id) => id !== leader)] };
}

async function wrkRow(s: Sys, o: { tls: boolean; op: Op; via: "leader" | "follower"; connections: number; seconds: number; label: string; measured?: boolean }): Promise<Row> {
  const { leader, follower, order } = await leaderOf(s);
  const target = o.via === "leader" ? leader : follower;
  const nodes = [target, ...order.filter((id) => id !== target)];
  const keyPrefix = o.op === "read" ? "r-" : `w-${o.label}-`;
  const tag = `wrk-${o.label}`;
  const cpu0 = nodes.map((id) => cpuTimes(s.pid(id)));
  const wrk0 = childrenCpuMs();
  const run = await runWrk({ url: s.url(target), connections: o.connections, seconds: o.seconds, keyPrefix, request: luaRequest(s, o.op, tag) });
  const wrkCpu = childrenCpuMs() - wrk0;
  const cpu1 = nodes.map((id) => cpuTimes(s.pid(id)));
  const per = (x: number) => x / Math.max(1, run.ok);
  const cpuPerOk = nodes.map((_, i) => per(cpu1[i]!.user + cpu1[i]!.sys - cpu0[i]!.user - cpu0[i]!.sys));
  const sysPerOk = nodes.map((_, i) => per(cpu1[i]!.sys - cpu0[i]!.sys));
  const row: Row = { tls: o.tls, system: s.name as "cairn" | "etcd", op: o.op, via: o.via, label: o.label, keyPrefix, run, cpuPerOk, sysPerOk, wrkCpuPerReq: wrkCpu / Math.max(1, run.requests), measured: o.measured ?? true };
  log(`${s.name} tls ${o.tls ? "on" : "off"} ${o.op} via ${o.via} (${target}) c${o.connections}: ${Math.round(run.okPerSec)}/s 2xx, p50 ${run.p50} ms, p99 ${run.p99} ms, errors ${run.errors}, CPU ms per op ${cpuPerOk.map((x) => x.toFixed(2)).join("/")}`);
  const now = await s.leader();
  if (now !== leader) warn(`${s.name}: the leader changed during ${o.label} (${leader} -> ${now})`);
  return row;
}

// ---------------------------------------------------------------- the acknowledged-write check

/** Keys with `prefix` on node `id` (etcd: a serializable count; cairn: a stale listing). */
async function countKeys(s: Sys, id: string, prefix: string): Promise<number> {
  if (s.name === "etcd") {
    const b64 = (x: string) => Buffer.from(x).toString("base64");
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const r = await s.fetch(`${s.url(id)}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: b64(prefix), range_end: b64(end), count_only: true, serializable: true }) });
    if (r.status !== 200) throw new Error(`etcd ${id}: range count of ${prefix} answered ${r.status}: ${await r.text()}`);
    return Number(((await r.json()) as { count?: string }).count ?? 0);
  }
  let n = 0;
  let after = "";
  for (;;) {
    const q = `prefix=${encodeURIComponent(prefix)}&limit=1000&consistency=stale${after ? `&after=${encodeURIComponent(after)}` : ""}`;
    const r = await s.fetch(`${s.url(id)}/kv?${q}`, { headers: auth(s) });
    if (r.status !== 200) throw new Error(`cairn ${id}: GET /kv?${q} answered ${r.status}: ${await r.text()}`);
    const b = (await r.json()) as { items: { key: string }[]; next?: string };
    n += b.items.length;
    if (b.next === undefined || b.items.length === 0) return n;
    after = b.next;
  }
}

/** Changes tagged `tag` in node `id`'s feed (read locally). */
async function countChanges(s: CairnSystem, id: string, tag: string): Promise<number> {
  let n = 0;
  let since = 0;
  for (;;) {
    const q = `tag=${encodeURIComponent(tag)}&since=${since}&limit=1000&consistency=stale`;
    const r = await s.fetch(`${s.url(id)}/changes?${q}`, { headers: auth(s) });
    if (r.status !== 200) throw new Error(`cairn ${id}: GET /changes?${q} answered ${r.status}: ${await r.text()}`);
    const b = (await r.json()) as { changes: unknown[]; next: number; atEnd: boolean };
    n += b.changes.length;
    if (b.atEnd) return n;
    since = b.next;
  }
}

/**
 * wrk cannot say which writes were acknowledged, but the script's keys are
 * deterministic (thread t's n-th request writes KEYPREFIX-t-n, each key once)
 * and every run has its own prefix (cairn's POST /changes: its own tag). So
 * for each run: the 2xx answers are at most the keys (changes) present with
 * that prefix (tag) on every node, those are at most the requests the
 * script made, and every node holds the same number. A lost acknowledged
 * write makes some node's count fall below the 2xx answers; a write applied
 * twice (POST /changes has no key to make it idempotent) shows above `sent`.
 */
async function checkAcked(s: Sys, rows: Row[]): Promise<Check[]> {
  const out: Check[] = [];
  for (const r of rows.filter((x) => x.op !== "read" && x.system === s.name)) {
    const count = (id: string) => (r.op === "changes" ? countChanges(s as CairnSystem, id, `wrk-${r.label}`) : countKeys(s, id, r.keyPrefix));
    // Followers may still be applying: wait (bounded) until every node shows the same count.
    const counts = await waitFor(`${s.name}: every node to hold the same ${r.label} writes`, async () => {
      const cs = await Promise.all(s.ids.map(count));
      return cs.every((c) => c === cs[0]) && cs[0]! >= r.run.ok ? cs : undefined;
    }, 60_000, 200).catch(async () => await Promise.all(s.ids.map(count)));
    const pass = counts.every((c) => c === counts[0] && c >= r.run.ok && c <= r.run.sent);
    out.push({ label: r.label, ok: r.run.ok, sent: r.run.sent, counts: Object.fromEntries(s.ids.map((id, i) => [id, counts[i]!])), pass });
    log(`${s.name}: ${r.label}: ${r.run.ok} acknowledged, ${r.run.sent} sent, present ${counts.join("/")}: ${pass ? "ok" : "FAILED"}`);
  }
  return out;
}

// ---------------------------------------------------------------- one system, one TLS mode

/** `READ_KEYS` keys r-0 .. r-999 for the read rows (16 writers through the leader). */
async function preloadReads(s: Sys): Promise<void> {
  const { leader } = await leaderOf(s);
  const one = async (i: number) => {
    const key = `r-${i}`;
    const r = s.name === "etcd"
      ? await s.fetch(`${s.url(leader)}/v3/kv/put`, { method: "POST", body: JSON.stringify({ key: Buffer.from(key).toString("base64"), value: Buffer.from(VALUE).toString("base64") }) })
      : await s.fetch(`${s.url(leader)}/kv/${key}`, { method: "PUT", headers: { ...auth(s), "content-type": "application/octet-stream" }, body: VALUE });
    await r.arrayBuffer();
    if (r.status !== 200 && r.status !== 201) throw new Error(`${s.name}: preloading ${key} answered ${r.status}`);
  };
  for (let i = 0; i < READ_KEYS; i += 16) await Promise.all(Array.from({ length: Math.min(16, READ_KEYS - i) }, (_, j) => one(i + j)));
}

/**
 * The SIGTERM stepdown pause, as bench/pause.ts measures it: 8 closed-loop
 * writers through the followers; the longest gap between acknowledged writes
 * from the signal to 2 heartbeats after the leader's exit; then it restarts.
 */
async function sigtermPauses(s: CairnSystem, reps: number): Promise<number[]> {
  const c = s.cluster;
  let via: string[] = [];
  const w = new Writer(c, { via: () => via, clients: 8, attemptTimeoutMs: 5000, name: "sigterm" }).start();
  const out: number[] = [];
  try {
    for (let i = 0; i < reps; i++) {
      await s.waitHealthy();
      const leader = await s.leader();
      via = s.ids.filter((id) => id !== leader);
      await w.more(50);
      const t0 = performance.now();
      await c.stop(leader, 30_000);
      const exited = performance.now();
      await sleep(2 * HEARTBEAT_MS); // the window runs on past the exit: its length is the measurement
      out.push(w.maxGapMs(t0, exited + 2 * HEARTBEAT_MS));
      log(`cairn: SIGTERM of the leader ${leader}: longest write gap ${Math.round(out.at(-1)!)} ms`);
      await s.restart(leader);
    }
  } finally {
    await w.stop(5000);
  }
  await s.waitHealthy();
  return out;
}

async function benchSystem(s: Sys, tls: boolean): Promise<SystemRun> {
  const mode = tls ? "on" : "off";
  const rows: Row[] = [];
  const row = async (op: Op, via: "leader" | "follower", connections: number, measured = true) => {
    const label = measured ? `${mode}-${op}-${via[0]}${connections}` : `${mode}-warmup`;
    rows.push(await wrkRow(s, { tls, op, via, connections, seconds: measured ? SECONDS : WARMUP_SECONDS, label, measured }));
  };
  await s.waitHealthy();
  await row("put", "leader", MID, false);
  for (const n of CONNECTIONS) await row("put", "leader", n);
  if (s.name === "cairn") for (const n of CONNECTIONS) await row("changes", "leader", n);
  await row("put", "follower", MID);
  await preloadReads(s);
  await row("read", "leader", MID);
  const failoversMs = await runFailovers(s, FAILOVERS, log);
  const sigtermMs = s.name === "cairn" ? await sigtermPauses(s as CairnSystem, FAILOVERS) : [];
  await s.waitHealthy();
  const checks = await checkAcked(s, rows);
  return { tls, system: s.name as "cairn" | "etcd", rows, failoversMs, sigtermMs, checks };
}

async function runSystem(start: () => Promise<Sys>, tls: boolean): Promise<SystemRun> {
  const s = await start();
  try {
    return await benchSystem(s, tls);
  } finally {
    await s.close();
  }
}

async function main(): Promise<void> {
  let tools: { wrk: string; etcd: string };
  try {
    tools = ensureTools(log);
  } catch (e) {
    if (!(e instanceof ToolsUnavailableError)) throw e;
    console.error(`[wrk] SKIPPED: ${e.message}`);
    process.exit(3);
  }
  const loadStart = loadavg().map((x) => x.toFixed(2)).join(" / ");
  const busy = busyNote();
  if (busy) warn(busy);
  const t0 = performance.now();
  const runs: SystemRun[] = [];
  for (const tls of TLS_MODES) {
    log(`TLS ${tls ? "on" : "off"}: etcd`);
    runs.push(await runSystem(() => startEtcd({ tls }), tls));
    log(`TLS ${tls ? "on" : "off"}: cairn`);
    runs.push(await runSystem(() => startCairn({ tls }), tls));
  }
  const version = `${spawnSync(BINARY, ["version"], { encoding: "utf8" }).stdout?.trim() ?? "?"}, built ${statSync(BINARY).mtime.toISOString()}`;
  const facts = machine({
    cairn: `${version} (dist/cairn, bun build --compile)`,
    etcd: `${tools.etcd} (Debian etcd-server)`,
    wrk: tools.wrk,
    "load average (1/5/15 min)": `${loadStart} at the start, ${loadavg().map((x) => x.toFixed(2)).join(" / ")} at the end`,
    "run time": `${Math.round((performance.now() - t0) / 1000)} s`,
  });
  const command = ["bun run bench/wrk.ts", `--tls ${args.tls}`, QUICK ? "--quick" : "", args.seconds ? `--seconds ${SECONDS}` : "", args.failovers ? `--failovers ${FAILOVERS}` : ""].filter(Boolean).join(" ");
  const body = report({ runs, warnings, facts, command, quick: QUICK, seconds: SECONDS, connections: CONNECTIONS, mid: MID, failovers: FAILOVERS, valueBytes: VALUE.length, heartbeatMs: HEARTBEAT_MS });
  if (OUT) {
    writeSection(OUT, SECTION, body);
    log(`wrote the section "${SECTION}" of ${OUT}`);
  }
  console.log(`## ${SECTION}\n\n${body}`);
  const failed = runs.flatMap((r) => r.checks.filter((c) => !c.pass).map((c) => `${r.system} ${c.label}`));
  if (failed.length > 0) {
    console.error(`[wrk] FAILED: acknowledged writes missing or counts differing between nodes: ${failed.join(", ")}`);
    process.exit(1);
  }
  // A run without one 2xx answer measured nothing (a refused token, a wrong path): the benchmark is broken.
  const empty = runs.flatMap((r) => r.rows).filter((r) => r.run.ok === 0).map((r) => `${r.system} ${r.label} (${JSON.stringify(r.run.statuses)})`);
  if (empty.length > 0) {
    console.error(`[wrk] FAILED: runs with no 2xx answer: ${empty.join(", ")}`);
    process.exit(1);
  }
  process.exit(0);
}

if (import.meta.main) await main();

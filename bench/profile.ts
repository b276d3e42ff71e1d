/**
 * Where a write's time goes: a 3-node cluster (cairn init: HTTPS API, mutual
 * TLS between peers, fsync on) driven by `wrk` (PUT /kv, a new key per
 * write, 200-byte values, every write to the leader), with per-node CPU and
 * disk bytes from /proc, and optionally Bun's CPU profiler on every node:
 *
 *   bun run bench/profile.ts [--conns 1,256] [--duration 10] [--cpu-prof DIR]
 *                            [--strace] [--load-changes N --load-keys K] [--keep]
 *                            [--via-follower]
 *
 * --cpu-prof DIR  runs each node from the sources under `bun --cpu-prof
 *                 --cpu-prof-md` (profiles written into DIR at SIGTERM).
 * --strace        also runs one round per load under `strace -c -w -f` on
 *                 the leader (syscall wall time: fsync, fdatasync, writes);
 *                 strace slows the node, so its rate is not the real one.
 * --load-*        first fills the store (POST /changes in batches of 500,
 *                 POST /txn with 100 puts): the growth case.
 *
 * Prints one line per load and node: writes/s, CPU ms per write, bytes
 * written per write (/proc/PID/io write_bytes), checkpoints built.
 */
import { parseArgs } from "node:util";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { E2ECluster, ROOT, ensureBinary } from "../harness/cluster.ts";

const { values: args } = parseArgs({
  options: {
    conns: { type: "string", default: "1,256" },
    duration: { type: "string", default: "10" },
    "cpu-prof": { type: "string" },
    strace: { type: "boolean", default: false },
    "load-changes": { type: "string", default: "0" },
    "load-keys": { type: "string", default: "0" },
    "node-args": { type: "string", default: "" },
    keep: { type: "boolean", default: false },
    /** Another build of cairn to run (e.g. the one before a change), in place of dist/cairn. */
    binary: { type: "string" },
    /** TLS off: plain TCP between peers (--insecure) and an http:// API. */
    plain: { type: "boolean", default: false },
    /** Send the writes to a follower (which forwards them) instead of the leader. */
    "via-follower": { type: "boolean", default: false },
  },
});

const log = (s: string) => console.error(`[profile] ${s}`);
const conns = args.conns!.split(",").map(Number);
const durationS = Number(args.duration);
const BUN = process.execPath;

interface Sample {
  cpuMs: number;
  writeBytes: number;
}

function sample(pid: number): Sample {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  const io = readFileSync(`/proc/${pid}/io`, "utf8");
  const wb = Number(/write_bytes: (\d+)/.exec(io)![1]);
  return { cpuMs: ticks * 10, writeBytes: wb };
}

function wrkScript(token: string, dir: string, prefix: string): string {
  const path = join(dir, `put-${prefix}.lua`);
  writeFileSync(
    path,
    `local counter = 0
local tid = 0
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
wrk.method = "PUT"
wrk.body = string.rep("v", 200)
wrk.headers["Authorization"] = "Bearer ${token}"
wrk.headers["Content-Type"] = "application/octet-stream"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/kv/${prefix}-" .. tid .. "-" .. counter)
end
`,
  );
  return path;
}

interface WrkResult {
  rate: number;
  p50: string;
  p99: string;
  requests: number;
  non2xx: number;
}

/** wrk as a child process, not spawnSync: the nodes' log pipes must be drained meanwhile (a full pipe blocks a node). */
async function runWrk(url: string, script: string, c: number, seconds: number): Promise<WrkResult> {
  const threads = Math.min(2, c);
  const child = spawn("wrk", ["-t", String(threads), "-c", String(c), "-d", `${seconds}s`, "--latency", "-s", script, url], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  if (code !== 0) throw new Error(`wrk failed: ${err}`);
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "-";
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "-";
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rate, p50, p99, requests, non2xx };
}

/** Checkpoint builds so far: the node logs one "checkpoint ckpt-N at index I: B bytes in T ms" line per build. */
function builds(c: E2ECluster, id: string): number {
  return c.logs(id).filter((l) => /"msg":"checkpoint \S+ at index \d+: \d+ bytes in/.test(l)).length;
}

/** POST to the leader, retried (a loaded machine may see an election during the load; the writes are idempotent by key). */
async function postRetrying(c: E2ECluster, path: string, body: string, want: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const leader = await c.leader(60_000);
    const r = await c.fetch(`${c.api(leader)}${path}`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": `${path}-${Bun.hash(body)}` }, body }).catch((e: Error) => e);
    if (!(r instanceof Error) && r.status === want) return void (await r.arrayBuffer());
    const why = r instanceof Error ? r.message : `${r.status}: ${await r.text()}`;
    if (attempt >= 20) throw new Error(`load: POST ${path} failed 20 times, last ${why}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

async function loadStore(c: E2ECluster, leader: string, changes: number, keys: number): Promise<void> {
  const t0 = performance.now();
  // About 550 MB per data directory with 1,000,000 changes and 100,000 keys, as in issue 11.
  const pad = "x".repeat(100);
  let next = 0;
  const batches = Math.ceil(changes / 500);
  const worker = async () => {
    for (let b = next++; b < batches; b = next++) {
      const body = JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ data: { b, i, pad }, tags: ["load"] })));
      await postRetrying(c, "/changes", body, 201);
      if (b % 200 === 0) log(`loaded ${b * 500} changes (${Math.round(performance.now() - t0)} ms)`);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  next = 0;
  const txns = Math.ceil(keys / 100);
  const kworker = async () => {
    for (let t = next++; t < txns; t = next++) {
      const success = Array.from({ length: 100 }, (_, i) => ({ op: "put", key: `load-${t}-${i}`, value: "v".repeat(200) }));
      await postRetrying(c, "/txn", JSON.stringify({ success }), 200);
    }
  };
  await Promise.all(Array.from({ length: 4 }, kworker));
  log(`loaded ${changes} changes and ${keys} keys in ${Math.round(performance.now() - t0)} ms`);
}

async function main(): Promise<void> {
  ensureBinary();
  const c = await E2ECluster.init(3, (f) => {
    f.raft = { heartbeatMs: 100, electionMs: 1000 };
    if (args.plain) for (const n of f.nodes) n.api = n.api.replace(/^https:/, "http:");
  });
  const prof = args["cpu-prof"];
  const ids = ["n1", "n2", "n3"];
  const extra = [...(args["node-args"] ? args["node-args"].split(" ") : []), ...(args.plain ? ["--insecure"] : [])];
  for (const id of ids) {
    if (prof) {
      const dir = join(prof, id);
      mkdirSync(dir, { recursive: true });
      // sh execs bun on the sources in place of the binary (the harness appends the binary's path: shifted away).
      const script = `shift; exec ${BUN} --cpu-prof --cpu-prof-md --cpu-prof-dir=${dir} ${join(ROOT, "src", "main.ts")} "$@"`;
      c.start(id, { wrap: ["sh", "-c", script, "sh"], args: extra });
    } else if (args.binary) c.start(id, { wrap: ["sh", "-c", `shift; exec ${args.binary} "$@"`, "sh"], args: extra });
    else c.start(id, { args: extra });
  }
  try {
    await c.waitVoters(3, 60_000);
    let leader = await c.leader(30_000);
    log(`cluster up in ${c.dir}, leader ${leader}`);
    const changes = Number(args["load-changes"]);
    const keys = Number(args["load-keys"]);
    if (changes > 0 || keys > 0) {
      await loadStore(c, leader, changes, keys);
      leader = await c.leader(60_000);
    }
    const pids = new Map(ids.map((id) => [id, c.procs.get(id)!.child.pid!]));
    const tmp = join(tmpdir(), `cairn-profile-${process.pid}`);
    mkdirSync(tmp, { recursive: true });
    for (const n of conns) {
      const script = wrkScript(c.token, tmp, `p${n}`);
      const before = new Map(ids.map((id) => [id, sample(pids.get(id)!)]));
      const ck0 = ids.map((id) => builds(c, id));
      const t0 = performance.now();
      const target = args["via-follower"] ? ids.find((id) => id !== leader)! : leader;
      const w = await runWrk(c.api(target), script, n, durationS);
      const secs = (performance.now() - t0) / 1000;
      const ck1 = ids.map((id) => builds(c, id));
      const writes = w.requests - w.non2xx;
      console.log(`conns ${n}: ${w.rate.toFixed(0)} writes/s (p50 ${w.p50}, p99 ${w.p99}, non-2xx ${w.non2xx}) over ${secs.toFixed(1)} s`);
      ids.forEach((id, k) => {
        const a = before.get(id)!;
        const b = sample(pids.get(id)!);
        const role = (id === leader ? "leader" : "follower") + (id === target && target !== leader ? " (wrk's target)" : "");
        console.log(
          `  ${id} ${role}: CPU ${((b.cpuMs - a.cpuMs) / writes * 1000).toFixed(0)} us/write (${((b.cpuMs - a.cpuMs) / 10 / secs).toFixed(0)}% of a core), disk writes ${((b.writeBytes - a.writeBytes) / writes).toFixed(0)} B/write, checkpoints built ${ck1[k]! - ck0[k]!}`,
        );
      });
      if (args.strace) {
        const out = join(tmp, `strace-${n}.txt`);
        const st = spawn("strace", ["-c", "-w", "-f", "-o", out, "-e", "trace=fsync,fdatasync,pwrite64,write,writev,read,sendto,recvfrom,futex,epoll_wait,epoll_pwait", "-p", String(pids.get(leader))], { stdio: "ignore" });
        await new Promise((r) => setTimeout(r, 500));
        const ws = await runWrk(c.api(leader), script, n, durationS);
        st.kill("SIGINT");
        await new Promise((r) => st.once("exit", r));
        console.log(`  under strace (leader ${leader}): ${ws.rate.toFixed(0)} writes/s, ${ws.requests} requests; syscall wall time:`);
        console.log(readFileSync(out, "utf8").split("\n").map((l) => "    " + l).join("\n"));
      }
    }
    for (const id of ids) {
      const du = spawnSync("du", ["-sm", c.dataDir(id)], { encoding: "utf8" }).stdout.split("\t")[0];
      const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pids.get(id)}/status`, "utf8"))?.[1];
      console.log(`  ${id}: data dir ${du} MB, RSS ${Math.round(Number(rss) / 1024)} MB`);
    }
    rmSync(tmp, { recursive: true, force: true });
  } finally {
    for (const id of ids) await c.signal(id, "SIGTERM");
    if (!args.keep) await c.close();
    else log(`kept ${c.dir}`);
  }
}

await main();

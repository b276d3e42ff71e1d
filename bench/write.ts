/**
 * Write throughput, latency and failover of a 3-node cluster of dist/cairn:
 *
 *   bun run bench/write.ts [--clients 64] [--warmup 3] [--duration 20] [--rounds 4]
 *                          [--failovers 5] [--etcd auto|yes|no] [--out bench/RESULTS.md]
 *
 * 1. Starts three `cairn serve` processes of the built binary in a temp dir
 *    (TLS from `cairn init`, the default timings heartbeatMs 100 and
 *    electionMs 1000, SQLite synchronous FULL).
 * 2. `--clients` closed-loop clients (keep-alive fetch, one request in flight
 *    each) POST /changes with a small JSON change, through the leader and
 *    through a follower (forwarded to the leader) in `--rounds` alternating
 *    rounds, each with `--warmup` seconds unmeasured; each path gets
 *    `--duration` seconds measured in total: writes/s and p50/p90/p99/max
 *    latency of the acknowledged writes (201 = committed on a majority and
 *    applied).
 * 3. `--failovers` times: kill -9 of the leader, then the time until the
 *    first successful write through a survivor (a fresh write to each
 *    survivor every 20 ms, open loop),
 *    then the old leader restarts and catches up before the next round.
 * 4. The same for a 3-member etcd when `etcd` is installed (see etcd.ts).
 *
 * Writes its section of bench/RESULTS.md (other sections are kept) and prints it.
 */
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { BINARY, ROOT, ensureBinary } from "../harness/cluster.ts";
import { startCairn } from "./cairn.ts";
import { etcdVersion, startEtcd } from "./etcd.ts";
import { machine, median, mergeLoads, runFailovers, runLoad, writeSection, type LoadResult, type System } from "./lib.ts";

const { values: args } = parseArgs({
  options: {
    clients: { type: "string", default: "64" },
    warmup: { type: "string", default: "3" },
    duration: { type: "string", default: "20" },
    failovers: { type: "string", default: "5" },
    rounds: { type: "string", default: "4" },
    etcd: { type: "string", default: "auto" },
    out: { type: "string", default: join(ROOT, "bench", "RESULTS.md") },
  },
});

function whole(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number of at least ${min}, got ${JSON.stringify(v)}`);
  return n;
}

const clients = whole("clients", args.clients, 1);
const warmupMs = whole("warmup", args.warmup, 0) * 1000;
const durationMs = whole("duration", args.duration, 1) * 1000;
const failovers = whole("failovers", args.failovers, 0);
const rounds = whole("rounds", args.rounds, 1);
if (!["auto", "yes", "no"].includes(args.etcd!)) throw new Error(`--etcd must be auto, yes or no, got ${args.etcd}`);

const log = (s: string) => console.error(`[bench] ${s}`);
const warnings: string[] = [];

interface Run {
  loads: LoadResult[];
  failovers: number[];
}

/**
 * Leader and follower are measured in alternating rounds (leader, follower,
 * leader, ...), each with its own warm-up, so that other work on the machine
 * weighs on both alike; each path gets `durationMs` measured in total.
 */
async function bench(sys: System): Promise<Run> {
  await sys.waitHealthy();
  const leader = await sys.leader();
  const follower = sys.ids.find((id) => id !== leader)!;
  const parts = new Map<string, LoadResult[]>([["leader", []], ["follower", []]]);
  const roundMs = Math.max(1000, Math.round(durationMs / rounds));
  for (let round = 0; round < rounds; round++) {
    for (const [via, label] of [[leader, "leader"], [follower, "follower"]] as const) {
      const r = await runLoad(sys, via, label, { clients, warmupMs, durationMs: roundMs });
      log(`${sys.name} round ${round + 1}/${rounds} via ${label} (${via}): ${Math.round(r.rate)} writes/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, errors ${JSON.stringify(r.errors)}`);
      parts.get(label)!.push(r);
      const now = await sys.leader();
      if (now !== leader) {
        warnings.push(`${sys.name}: the leader changed during round ${round + 1} via the ${label} (${leader} -> ${now}); the rest ran with the old ids`);
        log(`WARNING: ${warnings.at(-1)}`);
      }
    }
  }
  const loads = [...parts.values()].map(mergeLoads);
  const fo = await runFailovers(sys, failovers, log);
  return { loads, failovers: fo };
}

const loadAverage = () => loadavg().map((x) => x.toFixed(2)).join(" / ");

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");

function loadTable(runs: Run[]): string {
  const rows = runs.flatMap((r) => r.loads).map((l) => {
    const errs = Object.entries(l.errors).map(([k, v]) => `${k}: ${v}`).join(", ") || "0";
    return `| ${l.system} | ${l.via} | ${l.clients} | ${l.seconds} | ${l.writes} | **${Math.round(l.rate)}** | ${ms(l.p50)} | ${ms(l.p90)} | **${ms(l.p99)}** | ${ms(l.max)} | ${errs} |`;
  });
  return [
    "| system | writes through | clients | seconds | writes | writes/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ...rows,
  ].join("\n");
}

function failoverTable(runs: Run[]): string {
  const n = Math.max(0, ...runs.map((r) => r.failovers.length));
  const head = `| system | ${Array.from({ length: n }, (_, i) => `run ${i + 1}`).join(" | ")} | median |`;
  const sep = `|---|${"---:|".repeat(n + 1)}`;
  const rows = runs.filter((r) => r.failovers.length > 0).map((r) => `| ${r.loads[0]!.system} | ${r.failovers.map((x) => `${Math.round(x)}`).join(" | ")} | **${Math.round(median(r.failovers))}** |`);
  return [head, sep, ...rows].join("\n");
}

async function main(): Promise<void> {
  ensureBinary();
  const cairnVersion = `${spawnSync(BINARY, ["version"], { encoding: "utf8" }).stdout?.trim() ?? "?"}, built ${statSync(BINARY).mtime.toISOString()}`;
  const etcdV = etcdVersion();
  const withEtcd = args.etcd === "yes" || (args.etcd === "auto" && etcdV !== null);
  if (args.etcd === "yes" && etcdV === null) throw new Error("--etcd yes, but etcd is not on PATH (apt-get install -y etcd-server)");
  const loadAtStart = loadAverage();
  const runs: Run[] = [];
  const systems: [string, () => Promise<System>][] = [["cairn", () => startCairn({ tls: true, tag: "bench" })]];
  if (withEtcd) systems.push(["etcd", startEtcd]);
  for (const [name, start] of systems) {
    log(`starting ${name}`);
    const sys = await start();
    try {
      runs.push(await bench(sys));
    } finally {
      await sys.close();
    }
  }
  const facts = machine({ cairn: `${cairnVersion} (dist/cairn, bun build --compile)`, etcd: etcdV ? `${etcdV} (Debian etcd-server)` : "not installed: no side-by-side run",
    "load average (1/5/15 min)": `${loadAtStart} at the start, ${loadAverage()} at the end (other work on the machine competes for its CPUs)`,
  });
  const command = `bun run bench/write.ts --clients ${clients} --warmup ${warmupMs / 1000} --duration ${durationMs / 1000} --rounds ${rounds} --failovers ${failovers} --etcd ${args.etcd}`;
  const body = `Written by \`bench/write.ts\`. Command (from the repository root, after \`npm run build\`):

\`\`\`sh
${command}
\`\`\`

Each system is 3 nodes on this one machine (loopback), with mutual TLS between
nodes and HTTPS for clients (CA and certificates from \`cairn init\`),
heartbeat 100 ms, election timeout 1000 ms, every write fsynced on a majority
before the answer (cairn: SQLite WAL, \`synchronous=FULL\`; etcd: its default
WAL fsync). The clients run on the same machine and share its CPUs with the
three nodes.

### Writes: ${clients} concurrent clients, small JSON

cairn: \`POST /changes\` with \`{"data": {"c", "s", "v"}, "tags": ["bench"]}\`,
answered 201 once committed and applied.${withEtcd ? ` etcd: \`POST /v3/kv/put\` through its
HTTP/JSON gateway with a key per write and the same JSON as the value.` : ""}
Each client is a closed loop (one request in flight, keep-alive connection).
"follower": every write goes to a follower, which forwards it to the leader.
Leader and follower alternate in ${rounds} rounds of ${durationMs / rounds / 1000} s measured (after
${warmupMs / 1000} s of warm-up each), so load from elsewhere on the machine weighs on both
alike. Latency is from sending the request to reading the whole answer; only
writes completing in a measured window count.${warnings.length > 0 ? `\n\nWarnings: ${warnings.join("; ")}.` : ""}

${loadTable(runs)}

### Failover: kill -9 of the leader to the first successful write (ms)

The leader is killed with SIGKILL; from then on a new write is sent to each
survivor every 20 ms, whether or not earlier ones have answered (a write
that reached a survivor before the election may wait for a dead leader), until
one succeeds: the time is that first success, within about 20 ms of the first
moment a fresh write can succeed. Then the old leader restarts and catches up
before the next run.

${failoverTable(runs)}

### Machine

${Object.entries(facts).map(([k, v]) => `- ${k}: ${v}`).join("\n")}
`;
  writeSection(args.out!, "Writes and failover (bench/write.ts)", body);
  console.log(body);
  log(`wrote the section "Writes and failover (bench/write.ts)" of ${args.out}`);
}

await main();

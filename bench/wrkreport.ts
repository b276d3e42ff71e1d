/**
 * The bench/RESULTS.md section of bench/wrk.ts: the issue's side-by-side
 * table for each TLS mode, every target marked met or missed with its
 * number, failovers, every raw wrk run (with CPU per write per node), the
 * acknowledged-write checks and the machine.
 */
import { median } from "./lib.ts";
import type { WrkRun } from "./wrkrun.ts";

export type Op = "put" | "changes" | "read";

export interface Row {
  readonly tls: boolean;
  readonly system: "cairn" | "etcd";
  readonly op: Op;
  readonly via: "leader" | "follower";
  readonly label: string;
  readonly keyPrefix: string;
  readonly run: WrkRun;
  /** CPU ms per 2xx answer of each node, the node written to first. */
  readonly cpuPerOk: number[];
  /** Of which system (kernel) time: syscalls, fsync, the network stack. */
  readonly sysPerOk: number[];
  /** CPU ms per request of wrk itself. */
  readonly wrkCpuPerReq: number;
  /** Whether the row counts in results (the warm-up does not). */
  readonly measured: boolean;
}

export interface Check {
  readonly label: string;
  readonly ok: number;
  readonly sent: number;
  readonly counts: Record<string, number>;
  readonly pass: boolean;
}

export interface SystemRun {
  readonly tls: boolean;
  readonly system: "cairn" | "etcd";
  readonly rows: Row[];
  readonly failoversMs: number[];
  readonly sigtermMs: number[];
  readonly checks: Check[];
}

export interface ReportInput {
  readonly runs: SystemRun[];
  readonly warnings: string[];
  readonly facts: Record<string, string>;
  readonly command: string;
  readonly quick: boolean;
  readonly seconds: number;
  readonly connections: number[];
  readonly mid: number;
  readonly failovers: number;
  readonly valueBytes: number;
  readonly heartbeatMs: number;
}

const f1 = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x.toFixed(2) : "-");
const rate = (r: Row | undefined) => (r ? Math.round(r.run.okPerSec).toLocaleString("en-US") : "-");
const cell = (r: Row | undefined) => (r ? `${rate(r)} (${f2(r.run.p50)} / ${f1(r.run.p99)})${r.run.errors > 0 ? ` ${r.run.errors} errors` : ""}` : "-");
const ratio = (a: Row | undefined, b: Row | undefined) => (a && b && b.run.okPerSec > 0 ? a.run.okPerSec / b.run.okPerSec : NaN);
const mode = (tls: boolean) => (tls ? "TLS on" : "TLS off");

function find(runs: SystemRun[], q: { tls: boolean; system: string; op: Op; via?: string; c: number }): Row | undefined {
  return runs
    .filter((r) => r.tls === q.tls && r.system === q.system)
    .flatMap((r) => r.rows)
    .find((r) => r.measured && r.op === q.op && r.via === (q.via ?? "leader") && r.run.connections === q.c);
}

/** The issue's table for one TLS mode: etcd, cairn PUT /kv and POST /changes side by side. */
function sideBySide(runs: SystemRun[], tls: boolean, i: ReportInput): string {
  const get = (system: string, op: Op, c: number, via = "leader") => find(runs, { tls, system, op, via, c });
  const lines = [
    "| load | etcd writes/s (p50 / p99 ms) | cairn `PUT /kv` | cairn `POST /changes` | ratio (PUT / changes) |",
    "|---|---|---|---|---|",
  ];
  for (const c of i.connections) {
    const e = get("etcd", "put", c);
    const p = get("cairn", "put", c);
    const ch = get("cairn", "changes", c);
    lines.push(`| ${c} connection${c === 1 ? "" : "s"} | ${cell(e)} | ${cell(p)} | ${cell(ch)} | ${f2(ratio(p, e))} / ${f2(ratio(ch, e))} |`);
  }
  const ef = get("etcd", "put", i.mid, "follower");
  const cf = get("cairn", "put", i.mid, "follower");
  lines.push(`| writes through a follower, ${i.mid} | ${cell(ef)} | ${cell(cf)} | | ${f2(ratio(cf, ef))} |`);
  const er = get("etcd", "read", i.mid);
  const cr = get("cairn", "read", i.mid);
  lines.push(`| reads, ${i.mid} (linearizable) | ${cell(er)} | ${cell(cr)} (\`GET /kv\`) | | ${f2(ratio(cr, er))} |`);
  return lines.join("\n");
}

interface Verdict {
  readonly target: string;
  readonly text: string;
}

const verdict = (met: boolean | null, what: string) => (met === null ? `not measured${what ? ` (${what})` : ""}` : `**${met ? "met" : "missed"}**: ${what}`);

function writeTargets(runs: SystemRun[], tls: boolean, i: ReportInput): Verdict[] {
  const out: Verdict[] = [];
  for (const c of [64, 256]) {
    for (const [op, name] of [["put", "PUT /kv"], ["changes", "POST /changes"]] as const) {
      const e = find(runs, { tls, system: "etcd", op: "put", c });
      const k = find(runs, { tls, system: "cairn", op, c });
      const r = ratio(k, e);
      const met = e && k ? r >= 2 && k.run.p99 <= e.run.p99 : null;
      out.push({ target: `writes at ${c} (${name}): >= 2.0x etcd's writes/s, p99 <= etcd's`, text: verdict(met, e && k ? `${f2(r)}x (${rate(k)} vs ${rate(e)}/s), p99 ${f1(k.run.p99)} vs ${f1(e.run.p99)} ms` : i.quick ? "--quick" : "") });
    }
  }
  for (const [op, name] of [["put", "PUT /kv"], ["changes", "POST /changes"]] as const) {
    const e = find(runs, { tls, system: "etcd", op: "put", c: 1 });
    const k = find(runs, { tls, system: "cairn", op, c: 1 });
    out.push({ target: `writes at 1 connection (${name}): p50 <= etcd's`, text: verdict(e && k ? k.run.p50 <= e.run.p50 : null, e && k ? `p50 ${f2(k.run.p50)} vs ${f2(e.run.p50)} ms` : "") });
  }
  const fl = find(runs, { tls, system: "cairn", op: "put", via: "follower", c: i.mid });
  const ld = find(runs, { tls, system: "cairn", op: "put", c: i.mid });
  const ef = ratio(find(runs, { tls, system: "etcd", op: "put", via: "follower", c: i.mid }), find(runs, { tls, system: "etcd", op: "put", c: i.mid }));
  out.push({ target: `writes through a follower at ${i.mid}: >= 0.8x through the leader`, text: verdict(fl && ld ? ratio(fl, ld) >= 0.8 : null, fl && ld ? `${f2(ratio(fl, ld))}x (${rate(fl)} vs ${rate(ld)}/s; etcd ${f2(ef)}x)` : "") });
  const er = find(runs, { tls, system: "etcd", op: "read", c: i.mid });
  const cr = find(runs, { tls, system: "cairn", op: "read", c: i.mid });
  out.push({ target: `linearizable reads at ${i.mid}: >= 4x etcd's`, text: verdict(er && cr ? ratio(cr, er) >= 4 : null, er && cr ? `${f2(ratio(cr, er))}x (${rate(cr)} vs ${rate(er)}/s)` : "") });
  return out;
}

function failTargets(runs: SystemRun[], tls: boolean, i: ReportInput): Verdict[] {
  const e = runs.find((r) => r.tls === tls && r.system === "etcd")?.failoversMs ?? [];
  const k = runs.find((r) => r.tls === tls && r.system === "cairn");
  const kf = k?.failoversMs ?? [];
  const st = k?.sigtermMs ?? [];
  const limit = 2 * i.heartbeatMs;
  return [
    { target: "failover after kill -9 of the leader: median below etcd's", text: verdict(e.length && kf.length ? median(kf) < median(e) : null, e.length && kf.length ? `${Math.round(median(kf))} vs ${Math.round(median(e))} ms (median of ${kf.length})` : "") },
    { target: `SIGTERM stepdown pause under 2 heartbeats (${limit} ms), every run`, text: verdict(st.length ? Math.max(...st) < limit : null, st.length ? `median ${Math.round(median(st))} ms, max ${Math.round(Math.max(...st))} ms (${st.length} runs)` : "") },
  ];
}

function targetsTable(runs: SystemRun[], i: ReportInput): string {
  const modes = [...new Set(runs.map((r) => r.tls))];
  const per = modes.map((tls) => [...writeTargets(runs, tls, i), ...failTargets(runs, tls, i)]);
  const lines = [`| target | ${modes.map(mode).join(" | ")} |`, `|---|${modes.map(() => "---|").join("")}`];
  per[0]!.forEach((v, j) => lines.push(`| ${v.target} | ${per.map((p) => p[j]!.text).join(" | ")} |`));
  return lines.join("\n");
}

/** CPU ms per write of each node (leader / follower / follower) by load: where the profile starts. */
function cpuTable(runs: SystemRun[], i: ReportInput): string {
  const lines = [`| TLS | system | op | ${i.connections.map((c) => `${c} conn.`).join(" | ")} | leader's kernel share (${i.connections.join(" / ")}) | wrk's own, per request (${i.connections.join(" / ")}) |`, `|---|---|---|${i.connections.map(() => "---|").join("")}---|---|`];
  for (const r of runs) {
    for (const op of ["put", "changes"] as const) {
      const rows = i.connections.map((c) => find(runs, { tls: r.tls, system: r.system, op, c }));
      if (rows.every((x) => x === undefined)) continue;
      const name = op === "changes" ? "POST /changes" : r.system === "etcd" ? "put" : "PUT /kv";
      lines.push(`| ${r.tls ? "on" : "off"} | ${r.system} | ${name} | ${rows.map((x) => (x ? x.cpuPerOk.map(f2).join(" / ") : "-")).join(" | ")} | ${rows.map((x) => (x ? `${Math.round((100 * x.sysPerOk[0]!) / x.cpuPerOk[0]!)}%` : "-")).join(" / ")} | ${rows.map((x) => f2(x?.wrkCpuPerReq)).join(" / ")} |`);
    }
  }
  return lines.join("\n");
}

function rawTable(runs: SystemRun[]): string {
  const lines = [
    "| TLS | system | op | via | conns | threads | s | requests | 2xx | 2xx/s | cairn/etcd | wrk req/s | errors | p50 ms | p75 ms | p90 ms | p99 ms | max ms | CPU ms per op per node (target first) | wrk CPU ms per req |",
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
  ];
  for (const r of runs.flatMap((x) => x.rows)) {
    const errs = [...Object.entries(r.run.statuses), ...Object.entries(r.run.socketErrors)].map(([k, v]) => `${k}: ${v}`).join(", ") || "0";
    const op = { put: r.system === "etcd" ? "put" : "PUT /kv", changes: "POST /changes", read: r.system === "etcd" ? "range" : "GET /kv" }[r.op];
    lines.push(`| ${r.tls ? "on" : "off"} | ${r.system} | ${op}${r.measured ? "" : " (warm-up)"} | ${r.via} | ${r.run.connections} | ${r.run.threads} | ${r.run.seconds} | ${r.run.requests} | ${r.run.ok} | ${Math.round(r.run.okPerSec)} | ${r.system === "cairn" && r.measured ? f2(ratio(r, find(runs, { tls: r.tls, system: "etcd", op: r.op === "changes" ? "put" : r.op, via: r.via, c: r.run.connections }))) : ""} | ${Math.round(r.run.requestsPerSec)} | ${errs} | ${f2(r.run.p50)} | ${f2(r.run.p75)} | ${f2(r.run.p90)} | ${f1(r.run.p99)} | ${f1(r.run.maxMs)} | ${r.cpuPerOk.map(f2).join(" / ")} | ${f2(r.wrkCpuPerReq)} |`);
  }
  return lines.join("\n");
}

function failoverTable(runs: SystemRun[]): string {
  const lines = ["| TLS | system | measure | runs (ms) | median ms | max ms |", "|---|---|---|---|---:|---:|"];
  for (const r of runs) {
    for (const [what, xs] of [["kill -9 of the leader to the next successful write", r.failoversMs], ["SIGTERM of the leader: longest write gap", r.sigtermMs]] as const) {
      if (xs.length === 0) continue;
      lines.push(`| ${r.tls ? "on" : "off"} | ${r.system} | ${what} | ${xs.map((x) => Math.round(x)).join(", ")} | **${Math.round(median(xs))}** | ${Math.round(Math.max(...xs))} |`);
    }
  }
  return lines.join("\n");
}

function checkTable(runs: SystemRun[]): string {
  const lines = ["| TLS | system | run | 2xx answers | requests made | present on each node | result |", "|---|---|---|---:|---:|---|---|"];
  for (const r of runs) {
    for (const c of r.checks) {
      lines.push(`| ${r.tls ? "on" : "off"} | ${r.system} | ${c.label} | ${c.ok} | ${c.sent} | ${Object.entries(c.counts).map(([id, n]) => `${id} ${n}`).join(", ")} | ${c.pass ? "ok" : "**FAILED**"} |`);
    }
  }
  return lines.join("\n");
}

export function report(i: ReportInput): string {
  const modes = [...new Set(i.runs.map((r) => r.tls))];
  const allPass = i.runs.every((r) => r.checks.every((c) => c.pass));
  return `Written by \`bench/wrk.ts\`${i.quick ? " (a --quick smoke run: its numbers mean nothing)" : ""}.${i.warnings.length > 0 ? `\n\n**Warnings**: ${i.warnings.join("; ")}.\n\n` : " "} Command (from the repository root, after \`npm run build\`):

\`\`\`sh
${i.command}
\`\`\`

Both systems are 3 members on this one machine (loopback), started one after
the other in the same run, fsync of every write on a majority before the
answer (etcd ${i.facts.etcd}: its defaults, heartbeat 100 ms, election 1000 ms;
cairn: \`cairn init\`'s cluster file, heartbeat 100 ms, election 1000 ms,
SQLite WAL \`synchronous=FULL\`). **TLS on**: HTTPS for clients and mutual TLS
between members for both (etcd given the CA and node certificates of a
\`cairn init\`: \`--cert-file\`, \`--key-file\`, \`--peer-cert-file\`,
\`--peer-key-file\`, \`--peer-trusted-ca-file\`, \`--peer-client-cert-auth\`;
no client certificates, as cairn's clients use tokens). **TLS off**: plain
http clients and plain TCP between members for both (cairn: no \`tls\`
section, \`http://\` API addresses, \`serve --insecure\`). cairn's API
authentication stays on in both modes: wrk sends the admin token of
\`cairn init\` (\`Authorization: Bearer ...\`, one SHA-256 per request); etcd
runs without auth (its default).

The load generator is \`wrk\` (${i.facts.wrk}) with a Lua script generated by
bench/wrkrun.ts: \`-t2 -cN -d${i.seconds}s --latency\` (\`-t1\` for one connection),
each connection one request in flight, a new key per write
(\`w-RUN-THREAD-COUNTER\`) and a ${i.valueBytes}-byte value: cairn \`PUT /kv/KEY\` (the raw
value) and \`POST /changes\` (\`{"data": {"k": KEY, "v": VALUE}, "tags": [RUN]}\`);
etcd \`POST /v3/kv/put\` through its HTTP/JSON gateway (key and value in
base64). Reads: 1,000 keys written first, then random \`GET /kv/KEY\`
(linearizable, cairn's default) and etcd \`POST /v3/kv/range\` with
\`serializable: false\`. Writes go to the leader, except the follower row
(the follower forwards to the leader in both systems). Each system gets one
unmeasured ${i.mid}-connection warm-up run first. The script's \`response()\`
counts every non-2xx answer as an error; rates below are 2xx answers per second;
latencies are wrk's distribution over all answers.

"CPU ms per op per node" is each node's user + system CPU time over the run
(/proc/PID/stat) divided by the 2xx answers of the run: the node wrk talks to
first, then the others (for the leader rows: leader, follower, follower).
"wrk CPU" is the load generator's own (it shares the machine's CPUs).

### Side by side (writes/s or reads/s, p50 / p99 ms)

${modes.map((tls) => `${mode(tls)}:\n\n${sideBySide(i.runs, tls, i)}`).join("\n\n")}

### Targets of issue 11

${targetsTable(i.runs, i)}

(Growth targets: see the section of bench/growth.ts.)

### Failover and stepdown

kill -9 of the leader: from then on a fresh write to each survivor every 20 ms
(bench/lib.ts runFailovers) until one succeeds; the old leader restarts and
catches up before the next run (${i.failovers} runs). SIGTERM (cairn): 8 closed-loop
writers through the followers; the longest gap between acknowledged writes from
the signal to ${2 * i.heartbeatMs} ms after the exit, as bench/pause.ts measures it.

${failoverTable(i.runs)}

### Every acknowledged write on every node

wrk cannot list which writes were acknowledged, but each run's keys are
deterministic and its own (thread t's n-th request writes \`w-RUN-t-n\`, each
key once; \`POST /changes\` rows carry the run's tag): after all runs and
failovers, each node is asked for the keys with the run's prefix (etcd: a
serializable count on that member; cairn: a local \`GET /kv?prefix=\` listing
or the local feed filtered by the tag), once all nodes agree. The check
passes when every node holds the same number, at least the 2xx answers (an
acknowledged write lost anywhere shows as fewer) and at most the requests the
script made (a write applied twice shows as more). ${allPass ? "All passed." : "**Some FAILED** (below)."}

${checkTable(i.runs)}

### CPU ms per write per node (leader / follower / follower)

User + system CPU of each node's process over the run (/proc/PID/stat), over the
run's 2xx answers; "kernel share": the system part of the leader's (syscalls,
fsync, the loopback network stack). With ${i.facts.cpus ?? "the machine's CPUs"} shared by the three nodes
and wrk, CPU per write bounds the rate: the sum over the nodes (plus wrk's) times
the writes per second cannot exceed the CPUs' capacity.

${cpuTable(i.runs, i)}

### Every wrk run

${rawTable(i.runs)}

### Machine

${Object.entries(i.facts).map(([k, v]) => `- ${k}: ${v}`).join("\n")}
`;
}

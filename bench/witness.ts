/**
 * The witness's memory and disk under a long write load (README "Witness"):
 *
 *   bun run bench/witness.ts [--changes 1000000] [--batch 10] [--clients 16] [--out bench/RESULTS.md]
 *
 * Starts 2 data nodes and a witness of the built binary (dist/cairn, TLS from
 * `cairn init`, default timings), writes `--changes` small JSON changes
 * through the leader as POST /changes batches of `--batch` changes (each
 * batch one Raft entry) from `--clients` closed-loop clients, sampling the
 * witness's resident memory (VmRSS from /proc, and the kernel's peak VmHWM)
 * every second; then reports the witness's RSS, its data directory's size and
 * the log entries it still holds, beside a data node's, and writes its
 * section of bench/RESULTS.md.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { E2ECluster, ROOT } from "../harness/cluster.ts";
import { waitFor } from "../harness/ports.ts";
import { machine, writeSection } from "./lib.ts";

const { values: args } = parseArgs({
  options: {
    changes: { type: "string", default: "1000000" },
    batch: { type: "string", default: "10" },
    clients: { type: "string", default: "16" },
    out: { type: "string", default: join(ROOT, "bench", "RESULTS.md") },
  },
});
const CHANGES = Number(args.changes);
const BATCH = Number(args.batch);
const CLIENTS = Number(args.clients);
for (const [k, v] of [["changes", CHANGES], ["batch", BATCH], ["clients", CLIENTS]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a whole number of at least 1, got ${v}`);
}
const WITNESS = "n3";

function procKb(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon" | "RssFile"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return n;
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

const c = await E2ECluster.init(3, (f) => {
  f.raft = { heartbeatMs: 100, electionMs: 1000 };
  f.nodes.find((n) => n.id === WITNESS)!.role = "witness";
});
let report = "";
try {
  for (const id of ["n1", "n2", "n3"]) c.start(id);
  const leader = await waitFor("a data leader", async () => {
    const l = await c.leader(30_000);
    const st = await c.status(l);
    return l !== WITNESS && st.members.length === 3 && st.members.every((m: { role: string }) => m.role !== "learner") && !st.joint ? l : undefined;
  }, 60_000, 200);
  const pid = c.procs.get(WITNESS)!.child.pid!;
  const startRssKb = procKb(pid, "VmRSS");
  let peakRssKb = startRssKb;
  const sampler = setInterval(() => (peakRssKb = Math.max(peakRssKb, procKb(pid, "VmRSS"))), 1000);
  const batches = Math.ceil(CHANGES / BATCH);
  let next = 0;
  let written = 0;
  let errors = 0;
  const t0 = performance.now();
  let lastPrint = t0;
  const client = async (k: number) => {
    for (let b = next++; b < batches; b = next++) {
      const n = Math.min(BATCH, CHANGES - b * BATCH);
      const body = JSON.stringify(Array.from({ length: n }, (_, i) => ({ data: { c: k, b, i, v: "x".repeat(16) } })));
      for (;;) {
        const r = await c.json(leader, "/changes", { method: "POST", headers: { "content-type": "application/json", "idempotency-key": `b${b}` }, body }).catch(() => ({ status: 0 }));
        if (r.status === 200 || r.status === 201) break;
        errors++;
      }
      written += n;
      if (performance.now() - lastPrint > 10_000) {
        lastPrint = performance.now();
        console.log(`${written} changes in ${((lastPrint - t0) / 1000).toFixed(0)} s; witness RSS ${(procKb(pid, "VmRSS") / 1024).toFixed(1)} MiB, data dir ${mib(dirBytes(c.dataDir(WITNESS)))} MiB`);
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, k) => client(k)));
  const secs = (performance.now() - t0) / 1000;
  // Let the witness hear the final figures and compact (it compacts on ticks, in steps of 256 entries).
  await new Promise((r) => setTimeout(r, 3000));
  clearInterval(sampler);
  const [ws, ls] = await Promise.all([c.status(WITNESS), c.status(leader)]);
  const w = { rss: procKb(pid, "VmRSS"), hwm: procKb(pid, "VmHWM"), anon: procKb(pid, "RssAnon"), file: procKb(pid, "RssFile"), disk: dirBytes(c.dataDir(WITNESS)) };
  const dpid = c.procs.get(leader)!.child.pid!;
  const d = { rss: procKb(dpid, "VmRSS"), disk: dirBytes(c.dataDir(leader)) };
  const m = machine();
  report = `Written by \`bench/witness.ts\`. Command (from the repository root, after \`npm run build\`):

\`\`\`sh
bun run bench/witness.ts --changes ${CHANGES} --batch ${BATCH} --clients ${CLIENTS}
\`\`\`

2 data nodes and a witness (dist/cairn, TLS, heartbeat 100 ms, election 1000 ms, SQLite synchronous FULL).
${written} changes of about 50 bytes of JSON written through the leader ${leader} as ${batches} POST /changes
batches of ${BATCH} (each batch one Raft entry; ${ls.index.last} Raft entries in all), ${CLIENTS} closed-loop
clients, in ${secs.toFixed(0)} s (${Math.round(written / secs)} changes/s; ${errors} failed attempts retried).

| after ${written} changes | RSS now | RSS peak (sampled / kernel VmHWM) | data directory | log entries held |
|---|---:|---:|---:|---:|
| witness ${WITNESS} | ${(w.rss / 1024).toFixed(1)} MiB | ${(peakRssKb / 1024).toFixed(1)} / ${(w.hwm / 1024).toFixed(1)} MiB | ${mib(w.disk)} MiB | ${ws.index.last - ws.index.first + 1} (${ws.index.first}..${ws.index.last}) |
| data node ${leader} (leader) | ${(d.rss / 1024).toFixed(1)} MiB | | ${mib(d.disk)} MiB | ${ls.index.last - ls.index.first + 1} |

The witness's RSS at start was ${(startRssKb / 1024).toFixed(1)} MiB; at the end ${(w.anon / 1024).toFixed(1)} MiB of it was anonymous memory (heap,
stacks: RssAnon) and ${(w.file / 1024).toFixed(1)} MiB pages of the executable and other files (RssFile, shared with any other
cairn process on the host and reclaimable). Its disk is the SQLite file with its WAL: the
log entries every data voter holds are compacted away (in steps of 256 entries), so it holds about one
compaction step while both data nodes keep up; it holds more only while a data node lags or is down.

Machine: ${m.cpus}, ${m.memory}, ${m.os}, ${m["temp dir filesystem"]}, bun ${m.bun}, commit ${m["git commit"]}, ${m.date}
`;
} finally {
  await c.close();
}
writeSection(args.out!, "Witness memory and disk (bench/witness.ts)", report);
console.log(report);

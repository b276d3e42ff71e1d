/**
 * Latency overhead per write of a pre-commit validator:
 *
 *   bun run bench/validators.ts [--writes 400] [--rounds 4] [--clients 16] [--out bench/RESULTS.md]
 *
 * One real CairnNode (SQLite synchronous FULL, a fsync per write) in this
 * process with the HTTP API served on loopback; a fast validator (answers
 * {"ok": true} at once) in a separate bun process on loopback. POST /changes
 * with a tag the validator matches and a tag it does not, alternated write by
 * write by each client (paired: both see the same load on a shared machine),
 * `--writes` of each per round, sequential and with `--clients` concurrent
 * clients; the overhead is the difference of the medians (and p99).
 * Writes its section of bench/RESULTS.md.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApp } from "../src/api/app.ts";
import { Validators } from "../src/api/validators.ts";
import { VALIDATOR_DEFAULTS } from "../src/discovery/schema.ts";
import { Logger } from "../src/util/log.ts";
import { ROOT } from "../harness/cluster.ts";
import { inprocCluster } from "../harness/inproc.ts";
import { freePort, waitFor } from "../harness/ports.ts";
import { machine, writeSection } from "./lib.ts";

const { values: args } = parseArgs({
  options: {
    writes: { type: "string", default: "400" },
    rounds: { type: "string", default: "4" },
    clients: { type: "string", default: "16" },
    out: { type: "string", default: join(ROOT, "bench", "RESULTS.md") },
  },
});
const writes = Number(args.writes);
const rounds = Number(args.rounds);
const clients = Number(args.clients);
const log = (s: string) => console.error(`[bench] ${s}`);

const dir = mkdtempSync(join(tmpdir(), "cairn-bench-validators-"));
const vport = await freePort();
writeFileSync(
  join(dir, "validator.ts"),
  `Bun.serve({ hostname: "127.0.0.1", port: ${vport}, async fetch(req) { await req.arrayBuffer(); return Response.json({ ok: true }); } });`,
);
const child = Bun.spawn([process.execPath, join(dir, "validator.ts")], { stdout: "inherit", stderr: "inherit" });
const logger = new Logger({ level: "error", sink: () => {} });
const validators = new Validators({
  validators: [{ ...VALIDATOR_DEFAULTS, url: `http://127.0.0.1:${vport}/`, tags: ["checked"] }],
  cluster: "test",
  nodeId: "n1",
  log: logger,
});
const cluster = await inprocCluster(["n1"], { node: { beforePropose: (b) => validators.check(b), synchronous: "FULL" } });
const node = await cluster.start("n1");
await waitFor("n1 leads", () => node.readiness().ready && node.status().role === "leader", 15_000);
const app = createApp({ node, logger, version: "bench" });
const apiPort = await freePort();
const server = Bun.serve({ hostname: "127.0.0.1", port: apiPort, fetch: (r) => app.fetch(r) });
await waitFor("the validator listens", async () => (await fetch(`http://127.0.0.1:${vport}/`, { method: "POST", body: "{}" }).catch(() => null))?.ok, 10_000);

async function write(tag: string, i: number): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`http://127.0.0.1:${apiPort}/changes`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ data: { i, s: "a small JSON change" }, tags: [tag] }),
  });
  await r.arrayBuffer();
  if (r.status !== 201) throw new Error(`write ${i} with tag ${tag}: HTTP ${r.status}`);
  return performance.now() - t0;
}

/** `n` writes of each tag by `c` clients, each client alternating the tags write by write (paired under the same load). */
async function load(n: number, c: number, into: Record<string, number[]>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: c }, async (_, client) => {
    for (let k = client; next < n; k++) {
      const i = next++;
      for (const tag of k % 2 === 0 ? ["checked", "plain"] : ["plain", "checked"]) into[tag]!.push(await write(tag, i));
    }
  }));
}

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
const res: Record<string, Record<string, number[]>> = { seq: { checked: [], plain: [] }, conc: { checked: [], plain: [] } };
try {
  await load(50, 4, { checked: [], plain: [] }); // warm-up
  for (let r = 0; r < rounds; r++) {
    log(`round ${r + 1} of ${rounds}`);
    await load(writes, 1, res.seq!);
    await load(writes, clients, res.conc!);
  }
} finally {
  await server.stop(true);
  await cluster.close();
  child.kill();
  await child.exited;
  rmSync(dir, { recursive: true, force: true });
}

const row = (what: string, k: "seq" | "conc") => {
  const [c, p] = [res[k]!.checked!, res[k]!.plain!];
  const f = (x: number) => x.toFixed(2);
  return `| ${what} | ${f(q(p, 0.5))} / ${f(q(p, 0.99))} | ${f(q(c, 0.5))} / ${f(q(c, 0.99))} | ${f(q(c, 0.5) - q(p, 0.5))} / ${f(q(c, 0.99) - q(p, 0.99))} |`;
};
const m = machine();
const body = `Written by \`bench/validators.ts\`. Command (from the repository root):

\`\`\`sh
bun run bench/validators.ts --writes ${writes} --rounds ${rounds} --clients ${clients}
\`\`\`

One node (SQLite WAL, synchronous FULL: a fsync per write) with its HTTP API on loopback; one
validator, a separate bun process on loopback that answers \`{"ok": true}\` at once. Writes are
\`POST /changes\` of a small JSON change tagged "checked" (sent to the validator) or "plain" (not
sent), each client alternating the two write by write (so both see the same load), ${rounds} rounds of
${writes} writes each way, sequential (1 client) and with ${clients} concurrent clients. Latency in ms, median / p99, ${rounds * writes} writes per cell:

| clients | without validator | with validator | overhead per write |
|---|---|---|---|
${row("1", "seq")}
${row(String(clients), "conc")}

Machine: ${m.cpus}, ${m.memory}, ${m.os}, ${m["temp dir filesystem"]}, bun ${m.bun}, commit ${m["git commit"]}, ${m.date}
(a machine shared with other jobs: compare the two columns, measured interleaved, not absolute numbers).
`;
writeSection(args.out!, "Pre-commit validator overhead (bench/validators.ts)", body);
console.log(body);

/**
 * Embedding cairn: three nodes in this process (plain TCP on loopback, for a
 * demo) replicate a job queue; jobs pushed on one node are taken on another.
 *   bun run examples/embed.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CairnNode, Logger, parseClusterText } from "../src/index.ts";
import { encode, QueueFsm } from "./queue-fsm.ts";

const dir = mkdtempSync(join(tmpdir(), "cairn-embed-"));
const text = JSON.stringify({
  cluster: "queue",
  nodes: [1, 2, 3].map((i) => ({ id: `q${i}`, peer: `127.0.0.1:${17_400 + 2 * i}`, api: `http://127.0.0.1:${17_401 + 2 * i}` })),
  raft: { heartbeatMs: 50, electionMs: 500 },
});
const parsed = parseClusterText(text, join(dir, "cluster.json"));
if (!parsed.ok) throw parsed.error;
const logger = new Logger({ level: "warn" });
const nodes = ["q1", "q2", "q3"].map((id) => new CairnNode({ id, dataDir: join(dir, id), config: parsed.config, tls: "insecure", logger, fsm: new QueueFsm() }));
await Promise.all(nodes.map((n) => n.start()));
while (nodes.filter((n) => n.status().members.filter((m) => m.role === "voter").length === 3 && !n.status().joint).length === 0) {
  await new Promise((r) => setTimeout(r, 50));
}
for (const job of ["resize photo", "send invoice"]) console.log("push", job, (await nodes[1]!.proposeData(encode({ push: job }))));
console.log("take", (await nodes[2]!.proposeData(encode({ take: "worker-a" }))));
await Promise.all(nodes.map((n) => n.stop({ transfer: false })));
rmSync(dir, { recursive: true, force: true });

/**
 * `npm start`: a working 3-node cluster on loopback, with TLS, from scratch.
 * Writes examples/local/ (cluster.json, certificates, data, logs) on first
 * run and reuses it after; Ctrl-C stops the nodes gracefully (SIGTERM).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { httpClient } from "../src/platform/http.ts";

const root = join(import.meta.dir, "..");
const dir = join(import.meta.dir, "local");
const file = join(dir, "cluster.json");
const bun = process.execPath;
const main = join(root, "src", "main.ts");

if (!existsSync(file)) {
  const r = spawnSync(bun, [main, "init", "--nodes", "3", "--dir", dir, "--name", "local"], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const config = JSON.parse(readFileSync(file, "utf8")) as { nodes: { id: string; api: string }[] };
mkdirSync(join(dir, "logs"), { recursive: true });

const children: ChildProcess[] = config.nodes.map((n) => {
  const log = createWriteStream(join(dir, "logs", `${n.id}.log`), { flags: "a" });
  const child = spawn(bun, [main, "serve", "--config", file, "--id", n.id, "--data", join(dir, "data", n.id)], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  child.on("exit", (code, sig) => console.log(`${n.id} exited (${sig ?? code})`));
  return child;
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log("\nstopping the nodes (SIGTERM: the leader hands over first)...");
  await Promise.all(children.map((c) => new Promise((res) => (c.exitCode !== null ? res(null) : (c.once("exit", res), c.kill("SIGTERM"))))));
  process.exit(0);
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

const f = httpClient({ ca: readFileSync(join(dir, "ca", "ca.pem"), "utf8") });
const deadline = Date.now() + 30_000;
for (const n of config.nodes) {
  for (;;) {
    const ok = await f(`${n.api}/ready`).then((r) => r.ok).catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      console.error(`${n.id} is not ready after 30 s: see ${join(dir, "logs", `${n.id}.log`)}`);
      await stop();
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
const api = config.nodes[0]!.api;
const ca = join(dir, "ca", "ca.pem");
console.log(`
cairn: 3 nodes are up (logs in ${join(dir, "logs")}).

  dashboard:  ${api}/   (the certificate is signed by ${ca})
  with curl:  curl --cacert ${ca} -X POST ${api}/changes -H 'content-type: application/json' -d '{"data":{"hello":"world"},"tags":["demo"]}'
              curl --cacert ${ca} '${api}/changes?since=0'
              curl --cacert ${ca} -X PUT ${api}/kv/greeting -d hi && curl --cacert ${ca} ${api}/kv/greeting
  with cairn: bun src/main.ts status --config ${file}
              bun src/main.ts post '{"n":1}' --tag demo --config ${file}
              bun src/main.ts tail --follow --config ${file}

Ctrl-C stops the cluster; npm start again restarts it with its data.`);

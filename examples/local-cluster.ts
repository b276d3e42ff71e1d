/**
 * `npm start`: a working 3-node cluster on loopback, with TLS, from scratch.
 * Writes examples/local/ (cluster.json, certificates, data, logs) on first
 * run and reuses it after; Ctrl-C stops the nodes gracefully (SIGTERM).
 * The admin API token that `cairn init` prints once is kept in
 * examples/local/admin-token (a development convenience: a real deployment
 * stores it in its secret store, never beside the cluster).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { httpClient } from "../src/platform/http.ts";

const root = join(import.meta.dir, "..");
const dir = join(import.meta.dir, "local");
const file = join(dir, "cluster.json");
const bun = process.execPath;
const main = join(root, "src", "main.ts");

const tokenFile = join(dir, "admin-token");
if (!existsSync(file)) {
  const r = spawnSync(bun, [main, "init", "--nodes", "3", "--dir", dir, "--name", "local"], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
  process.stdout.write(r.stdout ?? "");
  if (r.status !== 0) process.exit(r.status ?? 1);
  const m = /admin API token[^\n]*: (cairn_\S+)$/m.exec(r.stdout);
  if (!m) throw new Error("cairn init printed no admin API token");
  writeFileSync(tokenFile, `${m[1]}\n`, { mode: 0o600 });
}
const token = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";
if (!token) {
  console.error(`no admin token in ${tokenFile}: remove ${dir} to start afresh, or write a token made by cairn token add --tokens ${join(dir, "tokens.json")} there`);
  process.exit(1);
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
    const ok = await f(`${n.api}/ready`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.ok).catch(() => false);
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

  API token:  in ${tokenFile} (admin; made by cairn init, which printed it once)
              export CAIRN_TOKEN=$(cat ${tokenFile})
  dashboard:  ${api}/   (the certificate is signed by ${ca})
              with the token: ${api}/#token=<token>
  with curl:  curl --cacert ${ca} -H "Authorization: Bearer $CAIRN_TOKEN" -X POST ${api}/changes -H 'content-type: application/json' -d '{"data":{"hello":"world"},"tags":["demo"]}'
              curl --cacert ${ca} -H "Authorization: Bearer $CAIRN_TOKEN" '${api}/changes?since=0'
              curl --cacert ${ca} -H "Authorization: Bearer $CAIRN_TOKEN" -X PUT ${api}/kv/greeting -d hi
  with cairn: (CAIRN_TOKEN set as above)
              bun src/main.ts status --config ${file}
              bun src/main.ts post '{"n":1}' --tag demo --config ${file}
              bun src/main.ts tail --follow --config ${file}

Ctrl-C stops the cluster; npm start again restarts it with its data.`);

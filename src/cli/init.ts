/**
 * `cairn init --nodes N --dir DIR`: a cluster file for N local nodes on free
 * consecutive ports, a CA (DIR/ca, kept apart) and one bundle per node
 * (DIR/tls/<id>: the CA certificate, the node's certificate and key).
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { basename, join, resolve } from "node:path";
import { CLUSTER_TLS_SECTION, writeClusterBundles } from "../transport/bundle.ts";
import { CliError, expectArgs, intOption, parse, UsageError } from "./args.ts";
import { initialTokenLines, writeInitialTokens } from "./tokens.ts";

export const INIT_USAGE = `cairn init --nodes N --dir DIR [--host 127.0.0.1] [--base-port 7400] [--name NAME] [--force]

Writes DIR/cluster.json with nodes n1..nN (peer and API ports on free
consecutive ports from --base-port, n1..nN as the founding list), the
cluster CA in DIR/ca/ (ca.pem, ca.key) and one bundle per node in
DIR/tls/<id>/ (ca.pem, node.pem, node.key).

What goes where: host n1 gets cairn, DIR/cluster.json, DIR/tokens.json and DIR/tls/n1/ only
(same relative layout); then run \`cairn serve --id n1\` there. DIR/ca/
holds the CA's private key: keep it off the hosts (it issues certificates,
see \`cairn help tls\`). Writes DIR/tokens.json with one admin API token
(hashes only: it goes to every host) and prints the token once.`;

const OPTIONS = {
  nodes: { type: "string", default: "3" },
  dir: { type: "string" },
  host: { type: "string", default: "127.0.0.1" },
  "base-port": { type: "string", default: "7400" },
  name: { type: "string" },
  force: { type: "boolean", default: false },
} as const;

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once("error", () => res(false));
    srv.listen(port, host, () => srv.close(() => res(true)));
  });
}

/** The first run of `count` free consecutive ports at or above `base`. */
export async function freeRun(host: string, base: number, count: number): Promise<number> {
  for (let start = base; start + count <= 65535; ) {
    let ok = true;
    for (let p = start; p < start + count; p++) {
      if (!(await portFree(host, p))) {
        ok = false;
        start = p + 1;
        break;
      }
    }
    if (ok) return start;
  }
  throw new UsageError(`no ${count} free consecutive ports on ${host} from ${base}: pick another --base-port`);
}

/** Creates `dir` (and its parents) or says why it cannot be written, before anything is written into it. */
function makeWritableDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const isFile = code === "EEXIST" || code === "ENOTDIR" || (existsSync(dir) && !statSync(dir).isDirectory());
    const why = isFile ? "it (or a part of its path) is a file, not a directory" : `${(e as Error).message}`;
    throw new CliError(`cannot write the cluster into --dir ${dir}: ${why}: pick a directory you may write to`);
  }
}

export async function init(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, OPTIONS, INIT_USAGE);
  expectArgs(positionals, { min: 0, max: 0 }, INIT_USAGE);
  const n = intOption(values.nodes, "nodes", 3, { min: 1, max: 64 });
  const base = intOption(values["base-port"], "base-port", 7400, { min: 1, max: 65535 });
  if (!values.dir) throw new UsageError(`--dir DIR is required\n\n${INIT_USAGE}`);
  const dir = resolve(values.dir);
  const file = join(dir, "cluster.json");
  if (existsSync(file) && !values.force) throw new UsageError(`${file} exists already: pass --force to overwrite it (and its certificates)`);
  const host = values.host!.trim();
  if (host === "" || /[\s/]/.test(host)) throw new UsageError(`--host ${JSON.stringify(values.host)} is not a host name or IP address: use e.g. --host 127.0.0.1`);
  const start = await freeRun(host, base, 2 * n);
  makeWritableDir(dir);
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  await writeClusterBundles(dir, ids, [...new Set([host, "localhost", "127.0.0.1"])]);
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const cluster = {
    cluster: values.name ?? basename(dir),
    founders: ids,
    nodes: ids.map((id, i) => ({ id, peer: `${hostPart}:${start + 2 * i}`, api: `https://${hostPart}:${start + 2 * i + 1}` })),
    tls: CLUSTER_TLS_SECTION,
    raft: { heartbeatMs: 100, electionMs: 1000 },
  };
  writeFileSync(file, JSON.stringify(cluster, null, 2) + "\n");
  printLayout({ dir, file, n, ports: `${start}-${start + 2 * n - 1}` });
  for (const l of initialTokenLines(writeInitialTokens(dir))) console.log(l);
  warnOldLayout(dir);
  return 0;
}

/** What init wrote and which part goes on which host. */
function printLayout(o: { dir: string; file: string; n: number; ports: string }): void {
  console.log(`wrote ${o.file} (${o.n} nodes, ports ${o.ports})`);
  console.log(`  ${join(o.dir, "tls", "<id>")}/  one bundle per node (ca.pem, node.pem, node.key): host <id> gets cluster.json, tokens.json and its own bundle only`);
  console.log(`  ${join(o.dir, "ca")}/  the cluster CA and its private key: keep it apart, never copy it to a host (cairn tls issue/rotate use it)`);
  console.log(`start each node with: cairn serve --config ${o.file} --id n1 --data ${join(o.dir, "data", "n1")}`);
}

/** Files an older cairn init left directly in DIR/tls (ca.key among them): say so, they must not go to hosts. */
function warnOldLayout(dir: string): void {
  const stale = readdirSync(join(dir, "tls"), { withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => e.name);
  if (stale.length === 0) return;
  console.warn(`warning: ${join(dir, "tls")} still holds files of the old layout (${stale.slice(0, 5).join(", ")}${stale.length > 5 ? ", ..." : ""}), ca.key perhaps among them: delete them (the new CA is in ${join(dir, "ca")})`);
}

/**
 * `cairn serve --config FILE [--id ID] [--data DIR]`: runs one node: the Raft
 * node, the peer transport, the HTTP API, and the cluster-file watcher. On
 * SIGTERM/SIGINT a leader hands leadership over before it exits.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createApp } from "../api/app.ts";
import { loadClusterFileSync, type ClusterConfig, type ClusterNode } from "../discovery/load.ts";
import { findSelf } from "../discovery/self.ts";
import { watchClusterFile } from "../discovery/watch.ts";
import { CairnNode } from "../node/node.ts";
import { serveHttp } from "../platform/http.ts";
import { onTerminate } from "../platform/process.ts";
import type { PeerTls } from "../transport/context.ts";
import { isLogLevel, Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { parse, UsageError } from "./args.ts";

export const SERVE_USAGE = `cairn serve --config FILE [--id ID] [--data DIR] [options]

Runs this host's node of the cluster described by FILE (cluster.json).

  --config FILE      the cluster file (hot-reloaded while running)
  --id ID            which entry of the file this node is; without it, the
                     entry whose peer address is one of this host's addresses
  --data DIR         the data directory (default: ./cairn-data/ID)
  --insecure         plain TCP between peers (development only); needed when
                     the file has no "tls" section
  --read-only MODE   "safe" (read index, default) or "lease"
  --tokens FILE      JSON {"read": [...], "write": [...], "admin": [...]} of API bearer tokens
  --log-level LEVEL  debug | info | warn | error (default info)
  --sync MODE        SQLite synchronous: FULL (default) or NORMAL

SIGTERM or SIGINT stops the node; a leader first hands leadership over.`;

const OPTIONS = {
  config: { type: "string" },
  id: { type: "string" },
  data: { type: "string" },
  insecure: { type: "boolean", default: false },
  "read-only": { type: "string", default: "safe" },
  tokens: { type: "string" },
  "log-level": { type: "string", default: "info" },
  sync: { type: "string", default: "FULL" },
} as const;

function loadConfig(path: string | undefined): ClusterConfig {
  if (!path) throw new UsageError(`--config FILE is required\n\n${SERVE_USAGE}`);
  const r = loadClusterFileSync(path);
  if (!r.ok) throw new UsageError(`cannot use cluster file: ${r.error.message}`);
  return r.config;
}

function readTls(self: ClusterNode, insecure: boolean): PeerTls | "insecure" {
  if (insecure) return "insecure";
  if (!self.tls) throw new UsageError(`the cluster file has no "tls" section: add one (cairn init writes it) or pass --insecure for plain TCP (development only)`);
  const read = (what: string, p: string) => {
    try {
      return readFileSync(p, "utf8");
    } catch (e) {
      throw new UsageError(`cannot read the TLS ${what} ${p}: ${(e as Error).message}`);
    }
  };
  return { ca: read("CA", self.tls.ca), cert: read("certificate", self.tls.cert), key: read("key", self.tls.key) };
}

function readTokens(path: string | undefined) {
  if (!path) return null;
  try {
    const t = JSON.parse(readFileSync(path, "utf8")) as { read?: string[]; write?: string[]; admin?: string[] };
    return { read: t.read ?? [], write: t.write ?? [], admin: t.admin ?? [] };
  } catch (e) {
    throw new UsageError(`cannot read tokens file ${path}: ${(e as Error).message}`);
  }
}

export async function serve(argv: string[]): Promise<number> {
  const { values } = parse(argv, OPTIONS, SERVE_USAGE);
  const level = values["log-level"]!;
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be debug, info, warn or error, got "${level}"`);
  const readOnly = values["read-only"];
  if (readOnly !== "safe" && readOnly !== "lease") throw new UsageError(`--read-only must be safe or lease, got "${readOnly}"`);
  const sync = values.sync;
  if (sync !== "FULL" && sync !== "NORMAL") throw new UsageError(`--sync must be FULL or NORMAL, got "${sync}"`);
  const config = loadConfig(values.config);
  const root = new Logger({ level });
  let self;
  try {
    self = findSelf(config, { id: values.id });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const log = root.with({ node: self.node.id });
  log.info(`this node is ${self.node.id} (${self.detail})`);
  const tls = readTls(self.node, values.insecure!);
  const dataDir = resolve(values.data ?? `cairn-data/${self.node.id}`);
  const node = new CairnNode({ id: self.node.id, dataDir, config, tls, logger: root, readOnly, synchronous: sync });
  await node.start();
  const api = new URL(self.node.api);
  const app = createApp({ node, logger: log, version: VERSION, tokens: readTokens(values.tokens) });
  const server = await serveHttp({
    hostname: api.hostname.replace(/^\[|\]$/g, ""),
    port: Number(api.port || (api.protocol === "https:" ? 443 : 80)),
    fetch: app.fetch,
    tls: api.protocol === "https:" && tls !== "insecure" ? { cert: tls.cert, key: tls.key } : undefined,
  });
  log.info(`API listening on ${self.node.api}`);
  const watcher = watchClusterFile({
    path: config.path,
    logger: log,
    initial: config,
    onChange: (c) => {
      log.info("cluster file changed: applying it");
      node.updateConfig(c);
    },
  });
  return await new Promise<number>((done) => {
    onTerminate(async (sig) => {
      log.info(`${sig}: stopping`);
      watcher.close();
      await node.stop({ transfer: true });
      await server.close();
      done(0);
    });
  });
}

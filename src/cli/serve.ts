/**
 * `cairn serve --config FILE [--id ID] [--data DIR]`: runs one node: the Raft
 * node, the peer transport, the HTTP API, and the cluster-file watcher. On
 * SIGTERM/SIGINT a leader hands leadership over before it exits.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createApp } from "../api/app.ts";
import { SelfNotFoundError } from "../discovery/errors.ts";
import { loadClusterFileSync, type ClusterConfig, type ClusterNode } from "../discovery/load.ts";
import { findSelf, type SelfMatch } from "../discovery/self.ts";
import { watchClusterFile } from "../discovery/watch.ts";
import { DataDirRefusedError, dataDirFacts, describeData, removedError, type DataDirFacts } from "../node/datadir.ts";
import { CairnNode } from "../node/node.ts";
import { serveHttp } from "../platform/http.ts";
import { onTerminate } from "../platform/process.ts";
import { DB_FILE_NAME, RaftStore } from "../storage/store.ts";
import type { PeerTls } from "../transport/context.ts";
import { isLogLevel, Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { parse, UsageError } from "./args.ts";
import { CHECKPOINT_OPTIONS, CHECKPOINT_USAGE, checkpointNodeOptions } from "./serve-checkpoints.ts";

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

${CHECKPOINT_USAGE}

A node the file does not list (yet) waits for the file to list it. A data
directory of another node or cluster, or of a node removed from the cluster,
is refused at start with a message that says what to do.

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
  ...CHECKPOINT_OPTIONS,
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
  const ckpt = checkpointNodeOptions(values);
  const root = new Logger({ level });
  const term = termination();
  const found = await locateSelf({ config: loadConfig(values.config), id: values.id, data: values.data, log: root, terminated: term.signalled });
  if (found === "stopped") return 0;
  if (found === "refused") return 1;
  const { self, config } = found;
  const log = root.with({ node: self.node.id });
  log.info(`this node is ${self.node.id} (${self.detail})`);
  const tls = readTls(self.node, values.insecure!);
  const dataDir = dataDirOf(self.node.id, values.data);
  // Test only (never set in production): network faults injected in the peer transport, see src/transport/faults.ts.
  const testFaultsFile = process.env.CAIRN_TEST_FAULTS || undefined;
  const node = new CairnNode({ id: self.node.id, dataDir, config, tls, logger: root, readOnly, synchronous: sync, testFaultsFile, ...ckpt });
  try {
    await node.start();
  } catch (e) {
    if (!(e instanceof DataDirRefusedError)) throw e;
    log.error(e.message, { dataDir });
    return 1;
  }
  const shutdown = new AbortController();
  const app = createApp({ node, logger: log, version: VERSION, tokens: readTokens(values.tokens), signal: shutdown.signal });
  const listenApi = (url: string) => {
    const api = new URL(url);
    return serveHttp({
      hostname: api.hostname.replace(/^\[|\]$/g, ""),
      port: Number(api.port || (api.protocol === "https:" ? 443 : 80)),
      fetch: app.fetch,
      tls: api.protocol === "https:" && tls !== "insecure" ? { cert: tls.cert, key: tls.key } : undefined,
    });
  };
  let server = await listenApi(self.node.api);
  let apiUrl = self.node.api;
  log.info(`API listening on ${apiUrl}`);
  /** This node's API address changed in the file: serve there from now on, no restart. */
  const followApi = async (url: string) => {
    try {
      const next = await listenApi(url);
      const old = server;
      log.info(`this node's API address changed in the cluster file: now listening on ${url} (was ${apiUrl})`);
      [server, apiUrl] = [next, url];
      void old.close();
    } catch (e) {
      log.error(`this node's API address changed in the cluster file to ${url}, but it cannot listen there (${(e as Error).message}); still on ${apiUrl}`);
    }
  };
  const watcher = watchClusterFile({
    path: config.path,
    logger: log,
    initial: config,
    onChange: (c) => {
      log.info("cluster file changed: applying it");
      node.updateConfig(c);
      const me = c.nodes.find((n) => n.id === self.node.id);
      if (me && me.api !== apiUrl && c.cluster === config.cluster) void followApi(me.api);
    },
  });
  const sig = await term.signalled;
  log.info(`${sig}: stopping`);
  watcher.close();
  await node.stop({ transfer: true });
  await server.close();
  return 0;
}

/** The first SIGTERM / SIGINT, as a promise (one handler for the whole life of serve). */
function termination(): { signalled: Promise<string> } {
  let fire: (sig: string) => void = () => {};
  const signalled = new Promise<string>((res) => (fire = res));
  onTerminate((sig) => fire(sig));
  return { signalled };
}

function dataDirOf(id: string, data: string | undefined): string {
  return resolve(data ?? `cairn-data/${id}`);
}

/** What an existing data directory holds, without creating one; null if there is none. */
function peekDataDir(dir: string): DataDirFacts | null {
  if (!existsSync(join(dir, DB_FILE_NAME))) return null;
  const store = RaftStore.open({ dir });
  try {
    return dataDirFacts(store, dir);
  } finally {
    store.close();
  }
}

/**
 * Which entry of the file this node is. A node the file does not list waits
 * (watching the file) until it does, unless its data says it was removed from
 * the cluster: that never changes, so it stops with the reason ("refused").
 * "stopped" when a signal comes while waiting.
 */
async function locateSelf(o: {
  config: ClusterConfig;
  id: string | undefined;
  data: string | undefined;
  log: Logger;
  terminated: Promise<string>;
}): Promise<{ self: SelfMatch; config: ClusterConfig } | "stopped" | "refused"> {
  const first = trySelf(o.config, o.id);
  if (!(first instanceof Error)) return { self: first, config: o.config };
  const facts = o.id === undefined ? null : peekDataDir(dataDirOf(o.id, o.data));
  const log = o.id === undefined ? o.log : o.log.with({ node: o.id });
  if (facts?.removedAt != null && o.id !== undefined) {
    log.error(`${removedError(facts, o.id).message}; it is not in the cluster file ${o.config.path} either: this node does not take part`);
    return "refused";
  }
  log.warn(`${first.message}; ${facts ? `${describeData(facts)}; ` : ""}this node does not take part until the file lists it (waiting for the file to change)`);
  return await new Promise((resolvePick) => {
    const watcher = watchClusterFile({
      path: o.config.path,
      logger: log,
      initial: o.config,
      onChange: (c) => {
        const r = trySelf(c, o.id);
        if (r instanceof Error) return log.info(`still not in the cluster file: ${r.message}`);
        watcher.close();
        resolvePick({ self: r, config: c });
      },
    });
    void o.terminated.then((sig) => {
      log.info(`${sig}: stopping (this node had not started)`);
      watcher.close();
      resolvePick("stopped");
    });
  });
}

/** findSelf, with "not in the file" as a value (something to wait on) and ambiguity as a usage error. */
function trySelf(config: ClusterConfig, id: string | undefined): SelfMatch | SelfNotFoundError {
  try {
    return findSelf(config, { id });
  } catch (e) {
    if (e instanceof SelfNotFoundError) return e;
    throw new UsageError((e as Error).message);
  }
}

/**
 * `cairn serve --config FILE [--id ID] [--data DIR]`: runs one node: the Raft
 * node, the peer transport, the HTTP API, and the cluster-file watcher. On
 * SIGTERM/SIGINT a leader hands leadership over before it exits.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { createApp } from "../api/app.ts";
import { SelfNotFoundError } from "../discovery/errors.ts";
import { loadClusterFileSync, type ClusterConfig, type ClusterNode } from "../discovery/load.ts";
import { findSelf, type SelfMatch } from "../discovery/self.ts";
import { tlsFileProblems } from "../discovery/tlsfiles.ts";
import { vetReload } from "../discovery/vet.ts";
import { watchClusterFile } from "../discovery/watch.ts";
import { SrvDiscovery } from "../discovery/srv.ts";
import { Validators } from "../api/validators.ts";
import { DataDirRefusedError, dataDirFacts, describeData, lockDataDir, openCheckedStore, removedError, type DataDirFacts } from "../node/datadir.ts";
import { CairnNode } from "../node/node.ts";
import { onTerminate } from "../platform/process.ts";
import { DB_FILE_NAME } from "../storage/store.ts";
import type { PeerTls } from "../transport/context.ts";
import { BadTlsPairError, checkPair, type PairFacts } from "../transport/pair.ts";
import { readTlsFiles, TlsWatch } from "../transport/tlswatch.ts";
import { isLogLevel, Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { CliError, expectArgs, intOption, parse, UsageError } from "./args.ts";
import { WRITES_IN_FLIGHT_MAX_DEFAULT } from "../node/driver.ts";
import { AUTH_OPTIONS, AUTH_USAGE, listenApi as serveApi, setupAuth, warnPlainHttp } from "./serve-auth.ts";
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
  --log-level LEVEL  debug | info | warn | error (default info)
  --sync MODE        SQLite synchronous: FULL (default) or NORMAL
  --writes-in-flight N
                     log writes whose fsync may be pending at once (default
                     ${WRITES_IN_FLIGHT_MAX_DEFAULT}, 1 to 1024): the node goes on sending, acknowledging
                     what is durable and applying while the disk syncs; 1
                     waits for each fsync before the next write

${AUTH_USAGE}

${CHECKPOINT_USAGE}

A node the file does not list (yet) waits for the file to list it. A data
directory of another node or cluster, or of a node removed from the cluster,
in use by another process (DIR/cairn.lock), or whose database fails PRAGMA
quick_check, is refused at start (exit 1) with a message that says what to do.
A database error while running stops the node and exits 1 (crash-only).

SIGTERM or SIGINT stops the node; a leader first hands leadership over.`;

const OPTIONS = {
  config: { type: "string" },
  id: { type: "string" },
  data: { type: "string" },
  insecure: { type: "boolean", default: false },
  "read-only": { type: "string", default: "safe" },
  ...AUTH_OPTIONS,
  "log-level": { type: "string", default: "info" },
  sync: { type: "string", default: "FULL" },
  "writes-in-flight": { type: "string" },
  ...CHECKPOINT_OPTIONS,
} as const;

function loadConfig(path: string | undefined): ClusterConfig {
  if (!path) throw new UsageError(`--config FILE is required\n\n${SERVE_USAGE}`);
  const r = loadClusterFileSync(path);
  if (!r.ok) throw new UsageError(`cannot use cluster file: ${r.error.message}`);
  return r.config;
}

type TlsChange = (t: PeerTls) => void | Promise<void>;

/**
 * This node's TLS files, read and checked (usable files, then: key matches,
 * signed by the CA, CN = node id), with a watch that picks up a rotated pair
 * while running.
 */
async function readTls(self: ClusterNode, insecure: boolean, log: Logger): Promise<{ tls: PeerTls | "insecure"; watch: TlsWatch | null; apply: (f: TlsChange) => void }> {
  if (insecure) return { tls: "insecure", watch: null, apply: () => {} };
  if (!self.tls) throw new UsageError(`the cluster file has no "tls" section: add one (cairn init writes it) or pass --insecure for plain TCP (development only)`);
  const problems = tlsFileProblems(self.tls);
  if (problems.length > 0) throw new UsageError(`cannot use the TLS files of node ${self.id} named by the cluster file: ${problems.join("; ")}`);
  const paths = self.tls;
  let tls: PeerTls;
  let facts: PairFacts;
  try {
    tls = await readTlsFiles(paths);
    facts = await checkPair(tls, self.id);
  } catch (e) {
    if (e instanceof BadTlsPairError) throw new UsageError(`cannot use the TLS files of ${self.id} (${paths.cert}, ${paths.key}): ${e.message}`);
    throw e;
  }
  // The watch starts once the API listens; until then a change has nowhere to go.
  let handler: TlsChange = () => {};
  const watch = new TlsWatch({ paths, nodeId: self.id, logger: log, initial: tls, initialFacts: facts, onChange: (t) => handler(t) });
  return { tls, watch, apply: (f) => (handler = f) };
}

export async function serve(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, OPTIONS, SERVE_USAGE);
  expectArgs(positionals, { min: 0, max: 0 }, SERVE_USAGE);
  const level = values["log-level"]!;
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be debug, info, warn or error, got "${level}"`);
  const readOnly = values["read-only"];
  if (readOnly !== "safe" && readOnly !== "lease") throw new UsageError(`--read-only must be safe or lease, got "${readOnly}"`);
  const sync = values.sync;
  if (sync !== "FULL" && sync !== "NORMAL") throw new UsageError(`--sync must be FULL or NORMAL, got "${sync}"`);
  const writesInFlightMax = intOption(values["writes-in-flight"], "writes-in-flight", WRITES_IN_FLIGHT_MAX_DEFAULT, { min: 1, max: 1024 });
  const ckpt = checkpointNodeOptions(values);
  const root = new Logger({ level });
  const term = termination();
  const fileConfig = loadConfig(values.config);
  // With "discovery" the nodes come from DNS: wait for a first good answer (srv.ts).
  const srvProblem = { file: null as string | null, srv: null as string | null, set: (_p: string | null) => {} };
  const srv = new SrvDiscovery({ log: root, onConfig: (c) => applyConfig(c), onProblem: (p) => srvProblem.set(p), vet: (c) => srvVet(c) });
  let applyConfig: (c: ClusterConfig) => void = () => {};
  let srvVet: (c: ClusterConfig) => readonly string[] = () => [];
  const initial = await srv.first(fileConfig, term.signalled);
  if (initial === null) return 0;
  const auth = setupAuth(values, initial.path, root);
  let found: Awaited<ReturnType<typeof locateSelf>>;
  try {
    found = await locateSelf({ config: initial, fileConfig, id: values.id, data: values.data, log: root, terminated: term.signalled });
  } catch (e) {
    auth.close();
    // Reading the data directory of a node the file does not list: locked by another process, or damaged.
    if (!(e instanceof DataDirRefusedError)) throw e;
    root.error(e.message, { dataDir: e.dataDir });
    return 1;
  }
  if (found === "stopped" || found === "refused") auth.close();
  if (found === "stopped") return 0;
  if (found === "refused") return 1;
  const { self, config } = found;
  const log = root.with({ node: self.node.id });
  log.info(`this node is ${self.node.id} (${self.detail})`);
  const { tls, watch: tlsWatch, apply: onTlsChange } = await readTls(self.node, values.insecure!, log);
  const dataDir = dataDirOf(self.node.id, values.data);
  checkDataDirPath(dataDir);
  const tlsHealth = tlsWatch ?? undefined;
  // Crash-only: a node that hit a database error (or a broken invariant) has stopped serving and
  // logged why; the process exits 1 so that a supervisor restarts it (a damaged file is refused then).
  let failed: (e: Error) => void = () => {};
  const fatal = new Promise<Error>((res) => (failed = res));
  // Test only (never set in production): network faults injected in the peer transport, see src/transport/faults.ts.
  const testFaultsFile = process.env.CAIRN_TEST_FAULTS || undefined;
  const validators = new Validators({ validators: config.validators ?? [], cluster: config.cluster, nodeId: self.node.id, log });
  const beforePropose = (b: Uint8Array) => validators.check(b);
  const node = new CairnNode({ id: self.node.id, dataDir, config, tls, tlsHealth, logger: root, readOnly, synchronous: sync, writesInFlightMax, onFatal: (e) => failed(e), testFaultsFile, beforePropose, ...ckpt });
  try {
    await node.start();
  } catch (e) {
    if (!(e instanceof DataDirRefusedError)) throw e;
    log.error(e.message, { dataDir });
    auth.close();
    tlsWatch?.close();
    return 1;
  }
  const shutdown = new AbortController();
  const app = createApp({ node, logger: log, version: VERSION, auth: auth.auth, signal: shutdown.signal });
  let apiTls = tls;
  const listenApi = (url: string) => {
    const api = new URL(url);
    return serveApi({
      hostname: api.hostname.replace(/^\[|\]$/g, ""),
      port: Number(api.port || (api.protocol === "https:" ? 443 : 80)),
      app,
      tls: api.protocol === "https:" && apiTls !== "insecure" ? { cert: apiTls.cert, key: apiTls.key } : undefined,
      clientCa: auth.clientCa,
    });
  };
  let server = await listenApi(self.node.api);
  let apiUrl = self.node.api;
  log.info(`API listening on ${apiUrl}`);
  warnPlainHttp(apiUrl, auth, log);
  // A rotated pair: new peer connections and new API connections use it; nothing restarts.
  onTlsChange(async (next) => {
    apiTls = next;
    node.updateTls(next);
    if (new URL(apiUrl).protocol === "https:") await server.updateTls({ cert: next.cert, key: next.key });
  });
  tlsWatch?.start();
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
  const vetOpts = { selfId: self.node.id, cluster: config.cluster, tls: tls !== "insecure" };
  applyConfig = (c) => {
    log.info("cluster config changed: applying it");
    node.updateConfig(c);
    validators.update(c.validators ?? []);
    const me = c.nodes.find((n) => n.id === self.node.id);
    if (me && me.api !== apiUrl && c.cluster === config.cluster) void followApi(me.api);
  };
  srvVet = (c) => vetReload(c, vetOpts);
  srvProblem.set = (p) => {
    srvProblem.srv = p;
    node.setFileProblem([srvProblem.file, srvProblem.srv].filter((x) => x !== null).join("; ") || null);
  };
  srv.start(fileConfig, config);
  const watcher = watchClusterFile({
    path: config.path,
    logger: log,
    initial: fileConfig,
    vet: (next) => vetReload(next, vetOpts),
    onProblem: (p) => {
      srvProblem.file = p;
      srvProblem.set(srvProblem.srv);
    },
    // Through the SRV poller: a file with "discovery" gets its nodes from DNS, one without is used as is.
    onChange: (c) => srv.setFile(c),
  });
  const end = await Promise.race([term.signalled, fatal]);
  watcher.close();
  srv.close();
  auth.close();
  tlsWatch?.close();
  if (end instanceof Error) {
    // The node has stopped already (and said why, in one line): close the API, bounded, and exit 1.
    await Promise.race([server.close(), new Promise((r) => setTimeout(r, FATAL_CLOSE_MS))]);
    return 1;
  }
  log.info(`${end}: stopping`);
  await node.stop({ transfer: true });
  await server.close();
  return 0;
}

/** After a fatal error, how long the API may take to close before the process exits anyway. */
const FATAL_CLOSE_MS = 2000;

/** The first SIGTERM / SIGINT, as a promise (one handler for the whole life of serve). */
function termination(): { signalled: Promise<string> } {
  let fire: (sig: string) => void = () => {};
  const signalled = new Promise<string>((res) => (fire = res));
  onTerminate((sig) => fire(sig));
  return { signalled };
}

/** A data directory that is a file or cannot be created or written is told by name before the node starts. */
function checkDataDirPath(dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UsageError(`--data ${dir} is a file, not a directory: name the node's data directory (it is created if missing)`);
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new CliError(`cannot use the data directory ${dir} (--data): ${(e as Error).message}: pick a directory this user may write to`);
  }
}

function dataDirOf(id: string, data: string | undefined): string {
  return resolve(data ?? `cairn-data/${id}`);
}

/**
 * What an existing data directory holds, without creating one; null if there
 * is none. Under the directory's lock (refused if another process holds it),
 * released before the node starts (which takes it again for its life).
 */
function peekDataDir(dir: string): DataDirFacts | null {
  if (!existsSync(join(dir, DB_FILE_NAME))) return null;
  const lock = lockDataDir(dir, "cairn serve (reading the data directory)");
  try {
    const store = openCheckedStore({ dir });
    try {
      return dataDirFacts(store, dir);
    } finally {
      store.close();
    }
  } finally {
    lock.release();
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
  /** The file as read (with "discovery": no nodes); `config` has the nodes found in DNS. */
  fileConfig: ClusterConfig;
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
    // With "discovery" the list is in DNS: wait for the record (and the file) to list this node.
    const srv = new SrvDiscovery({
      log,
      onConfig: (c) => {
        const r = trySelf(c, o.id);
        if (r instanceof Error) return log.info(`still not in the cluster's node list: ${r.message}`);
        watcher.close();
        srv.close();
        resolvePick({ self: r, config: c });
      },
    });
    const watcher = watchClusterFile({ path: o.config.path, logger: log, initial: o.fileConfig, onChange: (c) => srv.setFile(c) });
    srv.start(o.fileConfig, o.config);
    void o.terminated.then((sig) => {
      log.info(`${sig}: stopping (this node had not started)`);
      watcher.close();
      srv.close();
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

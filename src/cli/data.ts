/**
 * The data tools: checkpoint create/list/fetch, backup (online, from a
 * running node), restore (into a new data directory, as a new single-node
 * cluster), dump/load (NDJSON of the feed and the keys) and recover (after a
 * permanent loss of quorum).
 */
import { createHash, randomUUID } from "node:crypto";
import { closeSync, createReadStream, createWriteStream, type WriteStream, existsSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { checkpointDir, dbPath, discardCheckpoint, listCheckpoints } from "../checkpoint/manifest.ts";
import { ChecksumMismatchError, verifyFileSync } from "../checkpoint/verify.ts";
import { DataDirRefusedError, LOCK_FILES, lockDataDir, openCheckedStore } from "../node/datadir.ts";
import { quickCheck } from "../storage/integrity.ts";
import { createInterface } from "node:readline";
import { copyCheckpointTables, attachCheckpoint, detachCheckpoint } from "../checkpoint/restore.ts";
import { DbCorruptError, DbError, openReadOnly, type FileLock } from "../platform/sqlite.ts";
import { CairnFsm } from "../statemachine/cairn.ts";
import { Applier } from "../statemachine/fsm.ts";
import { DB_FILE_NAME, RaftStore } from "../storage/store.ts";
import { CLIENT_OPTIONS, ClientError, json, request, target, type Target } from "./client.ts";
import { CliError, expectArgs, parse, UsageError } from "./args.ts";
import { Progress } from "./progress.ts";

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

interface ManifestLike {
  id: string;
  index: number;
  term: number;
  feedLast: number;
  bytes: number;
  sha256: string;
}

export async function checkpoint(argv: string[]): Promise<number> {
  const usage = "cairn checkpoint create|list|fetch ID --out FILE (--url URL | --config FILE)";
  const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, out: { type: "string" } } as const, usage);
  expectArgs(positionals, { min: 1, max: positionals[0] === "fetch" ? 2 : 1 }, usage);
  const t = target(values);
  switch (positionals[0]) {
    case "create":
      print(await json(await request(t, "/admin/checkpoint", { method: "POST" })));
      return 0;
    case "list":
      print(await json(await request(t, "/checkpoints")));
      return 0;
    case "fetch": {
      if (!positionals[1] || !values.out) throw new UsageError(`checkpoint fetch needs the checkpoint ID and --out FILE\n\n${usage}`);
      const m = await download(t, positionals[1], values.out);
      console.error(`fetched ${m.id} (${m.bytes} bytes, sha256 ${m.sha256}) to ${values.out}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown checkpoint action ${JSON.stringify(positionals[0])}: use create, list or fetch\n\n${usage}`);
  }
}

/**
 * Opens an output file at once, so that a path that cannot be written is
 * told before any work (and never as an unhandled stream error later).
 */
function openOutput(path: string): WriteStream & { failure(): Error | undefined } {
  let fd: number;
  try {
    fd = openSync(path, "w");
  } catch (e) {
    throw new CliError(`cannot write ${path}: ${(e as Error).message}: pick a path you may write to`);
  }
  let failed: Error | undefined;
  const out = createWriteStream(path, { fd });
  out.on("error", (e) => (failed ??= e));
  return Object.assign(out, { failure: () => failed });
}

/** Writes, waiting for drain; a stream error becomes a CliError naming the file. */
async function writeOut(out: ReturnType<typeof openOutput>, path: string, chunk: string | Uint8Array): Promise<void> {
  const fail = () => new CliError(`writing ${path} failed: ${out.failure()!.message}`);
  if (out.failure()) throw fail();
  if (!out.write(chunk)) await new Promise((r) => (out.once("drain", r), out.once("error", r)));
  if (out.failure()) throw fail();
}

async function closeOut(out: ReturnType<typeof openOutput>, path: string): Promise<void> {
  await new Promise<void>((r) => out.end(() => r()));
  if (out.failure()) throw new CliError(`writing ${path} failed: ${out.failure()!.message}`);
}

/** Downloads a checkpoint to `out`, verifying its SHA-256 before the file appears under that name. */
async function download(t: Target, id: string, out: string): Promise<ManifestLike> {
  const res = await request(t, `/checkpoints/${encodeURIComponent(id)}`);
  if (!res.ok || !res.body) await json(res);
  const expected = res.headers.get("x-checksum-sha256");
  const tmp = `${out}.part`;
  const h = createHash("sha256");
  const file = openOutput(tmp);
  const p = new Progress("downloaded", "bytes");
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      h.update(value);
      p.add(value.byteLength);
      await writeOut(file, tmp, value);
    }
    await closeOut(file, tmp);
  } catch (e) {
    // A cut download leaves nothing behind.
    file.destroy();
    rmSync(tmp, { force: true });
    throw e;
  }
  p.done();
  const actual = h.digest("hex");
  if (expected && expected !== actual) {
    rmSync(tmp, { force: true });
    throw new ClientError(`checkpoint ${id} failed verification: sha256 ${actual}, the server said ${expected}`, 0);
  }
  renameSync(tmp, out);
  // Beside it, in sha256sum's format: `cairn restore` checks the file against it (so does `sha256sum -c`).
  writeFileSync(checksumPath(out), `${actual}  ${basename(out)}\n`);
  return { id, index: Number(res.headers.get("x-checkpoint-index") ?? 0), term: 0, feedLast: 0, bytes: Number(res.headers.get("content-length") ?? 0), sha256: actual };
}

export async function backup(argv: string[]): Promise<number> {
  const usage = "cairn backup (--url URL | --config FILE) --out FILE";
  const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, out: { type: "string" } } as const, usage);
  expectArgs(positionals, { min: 0, max: 0 }, usage);
  if (!values.out) throw new UsageError(`--out FILE is required\n\n${usage}`);
  const t = target(values);
  // A fresh checkpoint makes the backup as new as the node's applied state.
  const made = (await json(await request(t, "/admin/checkpoint", { method: "POST" }))) as { checkpoint: ManifestLike | null };
  const m = made.checkpoint;
  if (!m) throw new ClientError("the node has nothing applied yet: nothing to back up", 0);
  await download(t, m.id, values.out);
  console.error(`backup of ${m.id} (index ${m.index}) written to ${values.out}`);
  return 0;
}

function emptyDataDir(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new UsageError(`--data ${dir} is a file, not a directory: name a new, empty data directory`);
  // The lock's own files (left by an earlier restore that failed) do not count.
  if (existsSync(dir) && readdirSync(dir).some((f) => !LOCK_FILES.has(f))) throw new UsageError(`${dir} is not empty: restore only into a new, empty data directory`);
}

const SQLITE_MAGIC = "SQLite format 3\0";

/**
 * Checks --from before anything opens it: opening a missing path with
 * SQLite would create an empty database there.
 */
function checkBackupFile(path: string): void {
  const what = "name a file made by cairn backup or cairn checkpoint fetch";
  if (!existsSync(path)) throw new UsageError(`--from ${path}: no such file: ${what}`);
  const st = statSync(path);
  if (!st.isFile()) throw new UsageError(`--from ${path} is not a file (a ${st.isDirectory() ? "directory" : "special file"}): ${what}`);
  const head = new Uint8Array(SQLITE_MAGIC.length);
  const fd = openSync(path, "r");
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (n < head.length || new TextDecoder().decode(head) !== SQLITE_MAGIC) {
    throw new UsageError(`--from ${path} is not a cairn backup (not an SQLite database, ${st.size} bytes): ${what}`);
  }
}

/** Where `cairn backup` and `cairn checkpoint fetch` record a file's SHA-256. */
export function checksumPath(file: string): string {
  return `${file}.sha256`;
}

/**
 * The SHA-256 `file` must have: --sha256, else the manifest beside a
 * checkpoint file (ckpt-N.db next to ckpt-N.json), else FILE.sha256 as
 * backup writes it. None: the file is refused (it could not be verified).
 */
function expectedChecksum(file: string, given: string | undefined): string {
  if (given !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(given)) throw new UsageError(`--sha256 must be 64 hex digits, got "${given}"`);
    return given.toLowerCase();
  }
  const manifest = file.replace(/\.db$/, ".json");
  if (manifest !== file && existsSync(manifest)) {
    const m = JSON.parse(readFileSync(manifest, "utf8")) as { sha256?: unknown };
    if (typeof m.sha256 === "string") return m.sha256;
  }
  const side = checksumPath(file);
  if (existsSync(side)) {
    const hex = /^([0-9a-fA-F]{64})\b/.exec(readFileSync(side, "utf8"));
    if (hex) return hex[1]!.toLowerCase();
    throw new UsageError(`${side} does not start with a SHA-256 (64 hex digits): fix or remove it, or pass --sha256 HEX`);
  }
  throw new UsageError(
    `no checksum for ${file}: a checkpoint is restored only once it is verified. Keep the ${basename(side)} that cairn backup wrote beside it, ` +
      `or pass --sha256 HEX (the sha256 GET /checkpoints lists for it)`,
  );
}

/**
 * Checks a backup or checkpoint before anything is written: its SHA-256, then
 * SQLite's quick_check, then that it is cairn's. Returns its applied index.
 */
function checkSource(file: string, given: string | undefined): number {
  checkBackupFile(file);
  try {
    verifyFileSync(file, expectedChecksum(file, given));
  } catch (e) {
    if (e instanceof ChecksumMismatchError) throw new ClientError(`${e.message}: nothing was restored; use another backup or checkpoint (cairn backup makes a fresh one)`, 0);
    throw e;
  }
  // Read-only: the backup must keep its bytes (its checksum), to be restored from again.
  const src = openReadOnly(file);
  try {
    quickCheck(src);
    const st = src.prepare("SELECT applied_index FROM raft_state WHERE id = 1").get();
    if (!st) throw new UsageError(`${file} is not a cairn checkpoint (no raft_state)`);
    return Number(st.applied_index);
  } catch (e) {
    if (e instanceof DbCorruptError) throw new ClientError(`${e.message}: nothing was restored; use another backup or checkpoint`, 0);
    if (e instanceof DbError) throw new UsageError(`${file} is not a cairn checkpoint (${e.message})`);
    throw e;
  } finally {
    src.close();
  }
}

export async function restore(argv: string[]): Promise<number> {
  const usage = "cairn restore --from FILE --data DIR --id ID [--sha256 HEX]";
  const { values, positionals } = parse(argv, { from: { type: "string" }, data: { type: "string" }, id: { type: "string" }, sha256: { type: "string" } } as const, usage);
  expectArgs(positionals, { min: 0, max: 0 }, usage);
  const missing = (["from", "data", "id"] as const).filter((k) => !values[k]);
  if (missing.length > 0) throw new UsageError(`${missing.map((k) => `--${k}`).join(", ")} ${missing.length === 1 ? "is" : "are"} required\n\n${usage}`);
  const [from, data, id] = [values.from!, values.data!, values.id!];
  const index = checkSource(from, values.sha256);
  emptyDataDir(data);
  const lock = lockOrExplain(data, `cairn restore --from ${from}`);
  try {
    restoreInto({ data, from, id, index });
  } catch (e) {
    // Nothing half-restored stays: the directory was empty, and is again.
    for (const f of readdirSync(data)) if (!LOCK_FILES.has(f)) rmSync(join(data, f), { recursive: true, force: true });
    throw e;
  } finally {
    lock.release();
  }
  return 0;
}

function restoreInto(values: { data: string; from: string; id: string; index: number }): void {
  const { data, from, id, index } = values;
  const store = RaftStore.open({ dir: data });
  try {
    new Applier({ store, fsm: new CairnFsm() });
    attachCheckpoint(store.db, from);
    const conf = { voters: [id], votersOutgoing: [], learners: [], learnersNext: [] };
    try {
      store.installSnapshot({ index, term: 1, conf }, copyCheckpointTables);
    } finally {
      detachCheckpoint(store.db);
    }
    store.persist({ entries: [], hardState: { term: 1, vote: "", commit: index }, clusterId: randomUUID() });
    store.setNodeId(id);
    console.error(`restored ${from} (state at index ${index}) into ${data} as a new one-node cluster ${store.clusterId()} with voter ${id}`);
    console.error(`start it with: cairn serve --config FILE --id ${id} --data ${data}; nodes added to the file join it`);
  } finally {
    store.close();
  }
}

export async function recover(argv: string[]): Promise<number> {
  const usage = "cairn recover --data DIR --id ID [--yes]";
  const { values, positionals } = parse(argv, { data: { type: "string" }, id: { type: "string" }, yes: { type: "boolean", default: false } } as const, usage);
  expectArgs(positionals, { min: 0, max: 0 }, usage);
  if (!values.data || !values.id) throw new UsageError(`--data DIR and --id ID are required\n\n${usage}`);
  if (!existsSync(values.data)) throw new UsageError(`--data ${values.data} does not exist: name the stopped node's data directory`);
  if (!statSync(values.data).isDirectory()) throw new UsageError(`--data ${values.data} is a file, not a data directory: name the stopped node's data directory`);
  if (!existsSync(join(values.data, DB_FILE_NAME))) {
    throw new UsageError(`--data ${values.data} has no ${DB_FILE_NAME}: it is not a node's data directory (nothing to recover)`);
  }
  if (!values.yes) {
    throw new UsageError(
      `recover makes ${values.data} the only voter of a NEW cluster (new cluster ID): the old members are fenced out and must be wiped to rejoin.\nOnly do this when a quorum is lost for good, with the node stopped. Re-run with --yes to go ahead.`,
    );
  }
  const lock = lockOrExplain(values.data, "cairn recover");
  try {
    discardDamagedCheckpoints(values.data);
    recoverLocked({ data: values.data, id: values.id });
  } finally {
    lock.release();
  }
  return 0;
}

/** A checkpoint that fails its checksum would be sent to the nodes that join the recovered one: discarded now. */
function discardDamagedCheckpoints(dataDir: string): void {
  const dir = checkpointDir(dataDir);
  for (const m of listCheckpoints(dir)) {
    try {
      verifyFileSync(dbPath(dir, m.id), m.sha256);
    } catch (e) {
      if (!(e instanceof ChecksumMismatchError)) throw e;
      discardCheckpoint(dir, m.id);
      console.error(`${e.message}: discarded it (the recovered node builds a new checkpoint when one is needed)`);
    }
  }
}

function recoverLocked(values: { data: string; id: string }): void {
  const store = openStoreOrExplain(values.data);
  try {
    const stored = store.nodeId();
    if (stored !== null && stored !== values.id) throw new UsageError(`${values.data} belongs to node ${stored}, not ${values.id}`);
    const applier = new Applier({ store, fsm: new CairnFsm() });
    // Every entry of this log is kept and applied, also those past the commit
    // index this node knew: an acknowledged write may be among them (the old
    // leader answered before this node heard of the commit), and a new leader
    // would have committed them too. Nothing newer exists anywhere now.
    const known = store.hardState().commit;
    const last = store.lastIndex();
    for (let applied = store.appliedIndex(); applied < last; applied = store.appliedIndex()) {
      applier.apply(store.entries(applied + 1, last + 1, 64 << 20), undefined);
    }
    const index = store.appliedIndex();
    const term = index >= store.firstIndex() - 1 ? store.term(index) : store.snapshotMeta().term;
    const oldCluster = store.clusterId();
    const newCluster = randomUUID();
    const conf = { voters: [values.id], votersOutgoing: [], learners: [], learnersNext: [] };
    store.installSnapshot({ index, term, conf });
    store.persist({ entries: [], hardState: { term: store.hardState().term + 1, vote: "", commit: index } });
    store.replaceClusterId(newCluster);
    const beyond = last > known ? `; kept ${last - known} entries past the last commit index this node knew (${known})` : "";
    console.error(`recovered: ${values.data} is now the single voter of cluster ${newCluster} (was ${oldCluster}), state at index ${index}${beyond}`);
    console.error("start it with cairn serve; edit the cluster file to list the surviving hosts; old members must be wiped (empty data directory) to rejoin");
  } finally {
    store.close();
  }
}

/** The data directory's lock; held by another process: refused with its PID (ClientError: exit 1). */
function lockOrExplain(dir: string, what: string): FileLock {
  try {
    return lockDataDir(dir, what);
  } catch (e) {
    if (e instanceof DataDirRefusedError) throw new ClientError(e.message, 0);
    throw e;
  }
}

/** The store after quick_check; a damaged one is refused with what to do (ClientError: exit 1). */
function openStoreOrExplain(dir: string): RaftStore {
  try {
    return openCheckedStore({ dir });
  } catch (e) {
    if (e instanceof DataDirRefusedError) throw new ClientError(e.message, 0);
    throw e;
  }
}

export async function dump(argv: string[]): Promise<number> {
  const usage = "cairn dump (--url URL | --config FILE) --out FILE";
  const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, out: { type: "string" } } as const, usage);
  expectArgs(positionals, { min: 0, max: 0 }, usage);
  if (!values.out) throw new UsageError(`--out FILE is required\n\n${usage}`);
  const path = values.out;
  const t = target(values);
  const out = openOutput(path);
  const write = (o: unknown) => writeOut(out, path, JSON.stringify(o) + "\n");
  const st = (await json(await request(t, "/status"))) as { cluster: string; feed: { first: number; last: number } };
  await write({ type: "header", format: "cairn-dump/1", cluster: st.cluster, feedFirst: st.feed.first, feedLast: st.feed.last, at: new Date().toISOString() });
  const p = new Progress("dumped", "records");
  for (let since = st.feed.first - 1; ; ) {
    const page = (await json(await request(t, `/changes?since=${since}&limit=1000`))) as { changes: { index: number }[]; next: number; atEnd: boolean };
    for (const c of page.changes) await write({ type: "change", ...c });
    p.add(page.changes.length);
    since = page.next;
    if (page.atEnd) break;
  }
  for (let after = ""; ; ) {
    const page = (await json(await request(t, `/kv?prefix=&limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`))) as { items: { key: string }[]; next?: string };
    for (const it of page.items) await write({ type: "kv", ...it });
    p.add(page.items.length);
    // A full page says where the next one starts; the last page has no `next`.
    if (page.next === undefined) break;
    after = page.next;
  }
  await closeOut(out, path);
  p.done();
  return 0;
}

type DumpRecord =
  | { type: "header" }
  | { type: "change"; data: unknown; tags: string[] }
  | { type: "kv"; key: string; contentType: string; value?: unknown; text?: string; base64?: string; version: number };

function kvBody(r: { contentType: string; value?: unknown; text?: string; base64?: string }): Blob | string {
  if (r.base64 !== undefined) return new Blob([Uint8Array.from(atob(r.base64), (ch) => ch.charCodeAt(0))]);
  if (r.text !== undefined) return r.text;
  return JSON.stringify(r.value);
}

/**
 * Replays a dump in order: plain changes are posted in batches; key-value
 * changes (tag "kv") are replayed as the writes they record, so the target's
 * feed and keys come out the same. Keys whose writes are older than the
 * dump's feed are then set from the key section.
 */
export async function load(argv: string[]): Promise<number> {
  const usage = "cairn load (--url URL | --config FILE) --in FILE";
  const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, in: { type: "string" } } as const, usage);
  expectArgs(positionals, { min: 0, max: 0 }, usage);
  if (!values.in) throw new UsageError(`--in FILE is required\n\n${usage}`);
  const inPath = values.in;
  if (!existsSync(inPath) || !statSync(inPath).isFile()) throw new UsageError(`--in ${inPath}: no such file: name a dump made by cairn dump`);
  const t = target(values);
  const rl = createInterface({ input: createReadStream(inPath), crlfDelay: Infinity });
  const p = new Progress("loaded", "records");
  let batch: { data: unknown; tags: string[] }[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await json(await request(t, "/changes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(batch) }));
    p.add(batch.length);
    batch = [];
  };
  const written = new Set<string>();
  let line = 0;
  for await (const text of rl) {
    line++;
    if (!text.trim()) continue;
    let r: DumpRecord;
    try {
      r = JSON.parse(text) as DumpRecord;
    } catch (e) {
      throw new UsageError(`${values.in}:${line}: not JSON: ${(e as Error).message}`);
    }
    if (r.type === "change") {
      const d = r.data as { op?: string; key?: string; contentType?: string } | null;
      if (r.tags.includes("kv") && d && typeof d.key === "string" && (d.op === "put" || d.op === "del")) {
        await flush();
        const path = `/kv/${d.key.split("/").map(encodeURIComponent).join("/")}`;
        if (d.op === "put") await json(await request(t, path, { method: "PUT", headers: { "content-type": d.contentType ?? "application/octet-stream" }, body: kvBody(d as never) }));
        else await request(t, path, { method: "DELETE" });
        written.add(d.key);
        p.add(1);
      } else {
        batch.push({ data: r.data, tags: r.tags });
        if (batch.length >= 500) await flush();
      }
    } else if (r.type === "kv") {
      await flush();
      if (written.has(r.key)) continue;
      const path = `/kv/${r.key.split("/").map(encodeURIComponent).join("/")}`;
      await json(await request(t, path, { method: "PUT", headers: { "content-type": r.contentType }, body: kvBody(r) }));
      p.add(1);
    }
  }
  await flush();
  p.done();
  return 0;
}

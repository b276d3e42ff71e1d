/**
 * Whose data is this? A data directory records the node id it was made for,
 * the cluster it belongs to (the cluster ID from bootstrap and the cluster
 * file's name) and, once that has happened, that the node was removed from
 * the cluster. Starting on a directory of another node or cluster, or on the
 * data of a removed node, would let stale data rejoin by accident (DESIGN.md,
 * "The cluster file"), so the node refuses to start and says what to do.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DbCorruptError, LockHeldError, lockFile, type FileLock } from "../platform/sqlite.ts";
import type { ClusterConfig } from "../discovery/load.ts";
import { allMembers } from "../raft/index.ts";
import { RaftStore, type StoreOptions } from "../storage/store.ts";

export type DataDirProblem = "node" | "cluster" | "removed" | "locked" | "corrupt";

export class DataDirRefusedError extends Error {
  override name = "DataDirRefusedError";
  constructor(
    readonly problem: DataDirProblem,
    readonly dataDir: string,
    message: string,
  ) {
    super(message);
  }
}

export interface DataDirFacts {
  readonly dataDir: string;
  readonly nodeId: string | null;
  readonly clusterId: string | null;
  readonly clusterName: string | null;
  readonly removedAt: number | null;
  readonly lastIndex: number;
}

export function dataDirFacts(store: RaftStore, dataDir: string): DataDirFacts {
  return {
    dataDir,
    nodeId: store.nodeId(),
    clusterId: store.clusterId(),
    clusterName: store.clusterName(),
    removedAt: store.removedAt(),
    lastIndex: store.lastIndex(),
  };
}

function clusterOf(f: DataDirFacts): string {
  const name = f.clusterName === null ? "a cluster" : `cluster ${JSON.stringify(f.clusterName)}`;
  return f.clusterId === null ? name : `${name} (id ${f.clusterId})`;
}

/** The reason node `id` must not start on this data, or null if it may. */
export function dataDirProblem(f: DataDirFacts, want: { id: string; cluster: string; configPath: string }): DataDirRefusedError | null {
  const dir = f.dataDir;
  if (f.nodeId !== null && f.nodeId !== want.id) {
    return new DataDirRefusedError(
      "node",
      dir,
      `data directory ${dir} belongs to node ${JSON.stringify(f.nodeId)}, not ${JSON.stringify(want.id)}: ` +
        `start ${want.id} with its own data directory (--data), or with an empty one to join as a new node`,
    );
  }
  if (f.clusterName !== null && f.clusterName !== want.cluster) {
    return new DataDirRefusedError(
      "cluster",
      dir,
      `data directory ${dir} holds data of ${clusterOf(f)}, but the cluster file ${want.configPath} is for cluster ${JSON.stringify(want.cluster)}: ` +
        `point --data at this node's data directory of cluster ${JSON.stringify(want.cluster)}, or at an empty directory to join it as a new node ` +
        `(the old data is left as it is: move or delete it yourself)`,
    );
  }
  if (f.removedAt !== null) return removedError(f, want.id);
  return null;
}

export function removedError(f: DataDirFacts, id: string): DataDirRefusedError {
  return new DataDirRefusedError(
    "removed",
    f.dataDir,
    `node ${id} was removed from ${clusterOf(f)} (by log index ${f.removedAt ?? "?"}), and data directory ${f.dataDir} is what it had then: ` +
      `a removed node does not rejoin with its old data. To add ${id} back, list it in the cluster file and start it with an empty data directory ` +
      `(move ${f.dataDir} away first)`,
  );
}

/** A description of the data for a node that is not (or no longer) in the cluster file. */
export function describeData(f: DataDirFacts): string {
  if (f.clusterId === null && f.lastIndex === 0) return `data directory ${f.dataDir} is empty`;
  if (f.removedAt !== null) return `data directory ${f.dataDir} holds the data of a node removed from ${clusterOf(f)} (by log index ${f.removedAt})`;
  return `data directory ${f.dataDir} holds data of ${clusterOf(f)} up to log index ${f.lastIndex}`;
}

// ---------------------------------------------------------------- the lock

/** The lock file: SQLite's own locking holds it (see lockFile in src/platform/sqlite.ts for why). */
export const LOCK_FILE_NAME = "cairn.lock";
/** Who holds the lock: written by the holder, read by a process that is refused. */
export const PID_FILE_NAME = "cairn.lock.pid";
/** Files of the lock itself: a directory holding only these is as good as empty. */
export const LOCK_FILES: ReadonlySet<string> = new Set([LOCK_FILE_NAME, PID_FILE_NAME]);

/**
 * Takes the data directory's exclusive lock (creating the directory), held
 * until release() or the death of the process (kill -9 included: the kernel
 * drops it, so no stale lock ever blocks a restart). A directory another
 * process holds is refused with that process's PID (DataDirRefusedError
 * "locked"). `what` says what this process is (shown to the one refused).
 */
export function lockDataDir(dir: string, what: string): FileLock {
  mkdirSync(dir, { recursive: true });
  let lock: FileLock;
  try {
    lock = lockFile(join(dir, LOCK_FILE_NAME));
  } catch (e) {
    if (!(e instanceof LockHeldError)) throw e;
    const holder = lockHolder(dir);
    const who = holder ? `another cairn process (PID ${holder.pid}, ${holder.what})` : "another cairn process";
    throw new DataDirRefusedError(
      "locked",
      dir,
      `data directory ${dir} is in use by ${who}: ` +
        `only one process may use a data directory at a time. Stop that process first${holder ? ` (kill ${holder.pid})` : ""}, or give this one its own --data directory`,
    );
  }
  try {
    writeFileSync(join(dir, PID_FILE_NAME), `${process.pid} ${what}\n`);
  } catch (e) {
    lock.release();
    throw e;
  }
  return lock;
}

function lockHolder(dir: string): { pid: number; what: string } | null {
  try {
    const m = /^(\d+) (.*)$/m.exec(readFileSync(join(dir, PID_FILE_NAME), "utf8"));
    return m ? { pid: Number(m[1]), what: m[2]! } : null;
  } catch {
    return null; // the holder has not written it yet
  }
}

// ---------------------------------------------------------------- integrity

export function corruptError(dir: string, e: DbCorruptError): DataDirRefusedError {
  return new DataDirRefusedError(
    "corrupt",
    dir,
    `${e.message}: this node cannot start on it. Either restore the data directory from a checkpoint or backup ` +
      `(move ${dir} away, then: cairn restore --from FILE --data ${dir} --id ID), ` +
      `or let the node rejoin the cluster as new: move ${dir} away and start it with an empty data directory (it catches up from the leader)`,
  );
}

/**
 * Opens a locked data directory's store after PRAGMA quick_check; a damaged
 * database is refused (DataDirRefusedError "corrupt") with what to do.
 */
export function openCheckedStore(opts: StoreOptions): RaftStore {
  try {
    return RaftStore.open({ ...opts, verify: true });
  } catch (e) {
    if (e instanceof DbCorruptError) throw corruptError(opts.dir, e);
    throw e;
  }
}

/** Refuses another node's or cluster's data, or a removed node's (DataDirRefusedError); records who this data is for. */
export function claimDataDir(store: RaftStore, want: { id: string; dataDir: string; config: ClusterConfig }): void {
  let facts = dataDirFacts(store, want.dataDir);
  if (facts.removedAt !== null && store.appliedIndex() > facts.removedAt && allMembers(store.confState()).includes(want.id)) {
    // Removed once, then added back (with an empty directory) and caught up past that: the mark is stale.
    store.clearRemovedAt();
    facts = { ...facts, removedAt: null };
  }
  const problem = dataDirProblem(facts, { id: want.id, cluster: want.config.cluster, configPath: want.config.path });
  if (problem) throw problem;
  if (facts.nodeId === null) store.setNodeId(want.id);
  // Data from before the cluster name was recorded takes the name of the file it runs with.
  if (facts.clusterName === null && facts.clusterId !== null) store.setClusterName(want.config.cluster);
}

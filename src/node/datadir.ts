/**
 * Whose data is this? A data directory records the node id it was made for,
 * the cluster it belongs to (the cluster ID from bootstrap and the cluster
 * file's name) and, once that has happened, that the node was removed from
 * the cluster. Starting on a directory of another node or cluster, or on the
 * data of a removed node, would let stale data rejoin by accident (DESIGN.md,
 * "The cluster file"), so the node refuses to start and says what to do.
 */
import type { RaftStore } from "../storage/store.ts";

export type DataDirProblem = "node" | "cluster" | "removed";

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

/**
 * When to compact the Raft log and when to build a checkpoint file: pure
 * decisions over numbers, so that they are unit-tested without a node.
 *
 * The state database is durable with its applied index in the same
 * transaction, so the log can be compacted up to what is applied without a
 * copy of the state: compaction deletes log rows and costs what the log
 * holds, not what the state holds. A checkpoint file (a full copy of the
 * state) is built only when something needs one: a follower behind the
 * compacted log, a backup or POST /admin/checkpoint, feed retention (a change
 * is trimmed only once a checkpoint covers it, so that a reader told 410 can
 * load one), or the optional periodic policy; the ones the node starts on its
 * own are paced so that building takes at most a share of the time.
 */

export interface CompactionInput {
  /** The applied index (the state database is at it). */
  readonly applied: number;
  /** The compaction point: the last index no longer in the log (firstIndex - 1). */
  readonly start: number;
  /** Entries kept below the applied index so slightly lagging followers need no checkpoint. */
  readonly trailingEntries: number;
  /** The log is compacted once it holds this many entries beyond the trailing ones (0: not by count). */
  readonly everyEntries: number;
  /** The stored log's size, and the size past which it is compacted down to the holds (0: not by size). */
  readonly logBytes: number;
  readonly logBytesMax: number;
  /** Indexes the log must still hold entries after: live followers' match, offered checkpoints, a build in progress. */
  readonly holds: readonly number[];
  /** However far behind a hold is, the log keeps at most this many entries below the applied index. */
  readonly holdEntriesMax: number;
}

/** Whether it is time to compact: by count, by size, or not (checked before the holds are gathered). */
export function compactionDue(o: Omit<CompactionInput, "holds" | "holdEntriesMax">): "count" | "size" | null {
  if (o.logBytesMax > 0 && o.logBytes >= o.logBytesMax) return "size";
  if (o.everyEntries > 0 && o.applied - o.start >= o.trailingEntries + o.everyEntries) return "count";
  return null;
}

/** The index to compact the log through now, or null when it is not time (or nothing would go). */
export function compactionTarget(o: CompactionInput): number | null {
  const due = compactionDue(o);
  if (due === null) return null;
  const bySize = due === "size";
  // Past the size limit the trailing entries go too: only the holds keep the log.
  const want = Math.max(0, bySize ? o.applied : o.applied - o.trailingEntries);
  const hold = Math.min(Infinity, ...o.holds);
  const upTo = Math.min(o.applied, Math.max(Math.min(want, hold), o.applied - o.holdEntriesMax, 0));
  return upTo > o.start ? upTo : null;
}

export interface BuildPaceInput {
  readonly now: number;
  /** When the last build ended and how long it took (ms); -Infinity / 0 when none ran yet. */
  readonly lastEndAt: number;
  readonly lastBuildMs: number;
  /** Building may take at most this share of the time (0 < share <= 1). */
  readonly diskShare: number;
}

/**
 * The earliest time a build the node starts on its own may begin: after a
 * build of d ms, the next one waits d * (1 / share - 1), so that builds take
 * at most `share` of the time (and, each written at the build rate, at most
 * that share of the rate on average). Builds a peer or a backup asks for are
 * not paced.
 */
export function nextPacedBuildAt(o: BuildPaceInput): number {
  if (o.lastBuildMs <= 0 || o.diskShare >= 1) return o.lastEndAt;
  return o.lastEndAt + o.lastBuildMs * (1 / o.diskShare - 1);
}

export interface BuildDueInput {
  readonly applied: number;
  /** Index of the newest checkpoint file (0: none). */
  readonly newestIndex: number;
  /** ms since the newest checkpoint was built (or since start when none). */
  readonly ageMs: number;
  readonly everyEntries: number;
  readonly everyMs: number;
  /** Feed retention would trim past the newest checkpoint: it waits for a newer one. */
  readonly feedWaiting: boolean;
}

/** Why the node should build a checkpoint of its own accord now (before pacing), or null. */
export function buildDue(o: BuildDueInput): string | null {
  if (o.applied <= o.newestIndex) return null;
  if (o.feedWaiting) return "feed retention waits for a checkpoint covering the changes it trims";
  if (o.everyEntries > 0 && o.applied - o.newestIndex >= o.everyEntries) return `${o.applied - o.newestIndex} entries applied since the newest checkpoint`;
  if (o.everyMs > 0 && o.ageMs >= o.everyMs) return `the newest checkpoint is older than ${o.everyMs} ms`;
  return null;
}

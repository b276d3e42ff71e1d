/**
 * Builds a checkpoint file from a live database, without blocking its
 * writer: `VACUUM INTO` from a separate read connection copies a consistent
 * snapshot (WAL readers see one committed state) while the node goes on
 * writing. The copy keeps the state machine's tables and the applied index
 * and configuration stored with them; the Raft log and the node's identity
 * are removed from it. Runs in a worker thread (worker.ts).
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { openDatabase } from "../platform/sqlite.ts";
import type { ConfState } from "../raft/types.ts";

export interface BuildRequest {
  /** The node's database file. */
  readonly dbPath: string;
  /** Where to write the copy (a .tmp name: the caller renames it when it is recorded). */
  readonly outPath: string;
}

export interface BuildResult {
  readonly outPath: string;
  readonly index: number;
  readonly conf: ConfState;
  readonly feedLast: number;
  readonly bytes: number;
  readonly sha256: string;
  readonly buildMs: number;
}

const HASH_CHUNK_BYTES = 1 << 20;

export function sha256File(path: string): string {
  const h = createHash("sha256");
  const buf = new Uint8Array(HASH_CHUNK_BYTES);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

export function buildCheckpointFile(req: BuildRequest): BuildResult {
  const t0 = performance.now();
  rmSync(req.outPath, { force: true });
  const src = openDatabase(req.dbPath, { synchronous: "NORMAL" });
  try {
    src.prepare("VACUUM INTO ?").run(req.outPath);
  } finally {
    src.close();
  }
  const db = openDatabase(req.outPath, { synchronous: "FULL" });
  let index: number;
  let conf: ConfState;
  let feedLast = 0;
  try {
    const st = db.prepare("SELECT applied_index, conf FROM raft_state WHERE id = 1").get()!;
    index = Number(st.applied_index);
    conf = JSON.parse(String(st.conf)) as ConfState;
    const hasFeed = db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'feed_state'").get();
    if (hasFeed) feedLast = Number(db.prepare("SELECT last FROM feed_state WHERE id = 1").get()?.last ?? 0);
    // A checkpoint is the state machine only: no log, no votes, no node identity.
    db.exec("DELETE FROM raft_log; UPDATE raft_state SET term = 0, vote = '', commit_index = applied_index; DELETE FROM meta WHERE key = 'node_id'");
    const pages = Number(db.prepare("PRAGMA page_count").get()?.page_count ?? 0);
    const free = Number(db.prepare("PRAGMA freelist_count").get()?.freelist_count ?? 0);
    // The log may have been most of the file: give the space back (this is a private copy).
    if (pages > 0 && free * 4 > pages) db.exec("VACUUM");
    db.exec("PRAGMA journal_mode=DELETE");
  } finally {
    db.close();
  }
  rmSync(`${req.outPath}-wal`, { force: true });
  rmSync(`${req.outPath}-shm`, { force: true });
  return {
    outPath: req.outPath,
    index,
    conf,
    feedLast,
    bytes: statSync(req.outPath).size,
    sha256: sha256File(req.outPath),
    buildMs: Math.round(performance.now() - t0),
  };
}

/**
 * Checkpoints on disk: `<data>/checkpoints/ckpt-<index>.db` is a SQLite file
 * holding the state machine's tables as of applied index <index>, and
 * `ckpt-<index>.json` its manifest. The manifest is written (fsync, rename)
 * only after the file is complete and checksummed, so a checkpoint without a
 * manifest is a partial one: nothing uses it and startup deletes it.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { ConfState } from "../raft/index.ts";

export interface Manifest {
  /** "ckpt-<index>": stable, sortable, URL-safe. */
  readonly id: string;
  /** Raft applied index the state machine is at. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly term: number;
  readonly conf: ConfState;
  /** The feed's last change index in the checkpoint: consumers resume after it. */
  readonly feedLast: number;
  readonly bytes: number;
  /** Hex SHA-256 of the .db file. */
  readonly sha256: string;
  readonly clusterId: string | null;
  readonly createdAt: string;
  readonly buildMs: number;
}

export const CHECKPOINT_DIR = "checkpoints";

export function checkpointDir(dataDir: string): string {
  return join(dataDir, CHECKPOINT_DIR);
}

export function idFor(index: number): string {
  return `ckpt-${String(index).padStart(12, "0")}`;
}

export function dbPath(dir: string, id: string): string {
  return join(dir, `${id}.db`);
}

function manifestPath(dir: string, id: string): string {
  return join(dir, `${id}.json`);
}

const ID_RE = /^ckpt-\d{12}$/;

export function isCheckpointId(id: string): boolean {
  return ID_RE.test(id);
}

/** Writes a file durably: temp file, fsync, rename, fsync the directory. */
export function writeFileDurably(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  try {
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true }); // a failed write (a full disk) leaves no temporary file behind
    throw e;
  }
  fsyncDir(join(path, ".."));
}

export function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic.
  }
}

export function writeManifest(dir: string, m: Manifest): void {
  writeFileDurably(manifestPath(dir, m.id), JSON.stringify(m, null, 2) + "\n");
}

/** Complete checkpoints, newest first. */
export function listCheckpoints(dir: string): Manifest[] {
  if (!existsSync(dir)) return [];
  const out: Manifest[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".json")) continue;
    const id = f.slice(0, -5);
    if (!isCheckpointId(id) || !existsSync(dbPath(dir, id))) continue;
    try {
      out.push(JSON.parse(readFileSync(join(dir, f), "utf8")) as Manifest);
    } catch {
      // A manifest that does not parse is as good as none: treated as partial.
    }
  }
  return out.sort((a, b) => b.index - a.index);
}

export function newestCheckpoint(dir: string): Manifest | null {
  return listCheckpoints(dir)[0] ?? null;
}

export function findCheckpoint(dir: string, id: string): Manifest | null {
  if (!isCheckpointId(id)) return null;
  return listCheckpoints(dir).find((m) => m.id === id) ?? null;
}

/**
 * Deletes all but the newest `keep` checkpoints, sparing the `pinned` ones (a
 * transfer in progress uses them), and with `partials` (at start, when no
 * build can be running) the .tmp files a crash mid-build left.
 */
export function pruneCheckpoints(dir: string, keep: number, pinned: ReadonlySet<string> = new Set(), partials = false): string[] {
  if (!existsSync(dir)) return [];
  const complete = listCheckpoints(dir);
  const kept = new Set([...complete.slice(0, Math.max(1, keep)).map((m) => m.id), ...complete.filter((m) => pinned.has(m.id)).map((m) => m.id)]);
  const removed: string[] = [];
  for (const f of readdirSync(dir)) {
    // "ckpt-000000000042.db", ".json", "-wal": the id is the name up to the first dot.
    const id = f.split(".")[0]!;
    if (f === "incoming") continue;
    // A build in progress writes "<name>.db.tmp" and SQLite's "<name>.db.tmp-journal" beside it.
    if (/\.tmp($|-)/.test(f) ? !partials : kept.has(id)) continue;
    rmSync(join(dir, f), { force: true, recursive: true });
    removed.push(f);
  }
  return removed;
}

/**
 * A checkpoint whose file failed verification: its manifest goes first (so
 * nothing lists or sends it any more), then the file.
 */
export function discardCheckpoint(dir: string, id: string): void {
  rmSync(manifestPath(dir, id), { force: true });
  fsyncDir(dir);
  rmSync(dbPath(dir, id), { force: true });
}

export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

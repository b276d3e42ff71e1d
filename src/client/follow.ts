/**
 * client.follow(): every change after `since`, in order, forever (until the
 * signal aborts or the loop breaks), over long polls. A dropped connection, a
 * node restart or a cluster without quorum only delays it: it retries with
 * backoff and resumes after the last change it yielded. On 410 (the reader
 * fell below the retained feed) it downloads the checkpoint the answer
 * points to, hands it to onCheckpoint, and resumes after the checkpoint's index.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CairnClient } from "./client.ts";
import { GoneError, UnavailableError, type CheckpointPointer } from "./errors.ts";
import { downloadTo, sleep } from "./transport.ts";
import type { Change, Consistency } from "./types.ts";

export interface KvRow {
  readonly key: string;
  readonly value: Uint8Array;
  readonly contentType: string;
  readonly version: number;
}

/** A checkpoint downloaded (and checked against its SHA-256) for the application. */
export interface LoadedCheckpoint {
  readonly id: string;
  /** The feed index the checkpoint's state is at: follow() resumes after it. */
  readonly index: number;
  /** The downloaded SQLite file (deleted after onCheckpoint returns). */
  readonly path: string;
  /** The key-value rows of the checkpoint, in key order, read in pages. */
  kv(): Generator<KvRow>;
}

export interface FollowOptions {
  /** Changes after this feed index (default 0: from the start). */
  readonly since?: number;
  /** Only changes with at least one of these tags. */
  readonly tags?: readonly string[];
  readonly consistency?: Consistency;
  /** Long poll time per request (default 25 s, server cap 60). */
  readonly blockSec?: number;
  /** Changes per request (default 500). */
  readonly pageLimit?: number;
  readonly signal?: AbortSignal;
  /**
   * Called on 410 with the checkpoint the server points to; the state it holds
   * replaces what the application built from the changes it missed. Without
   * it, a 410 ends the loop with the GoneError.
   */
  readonly onCheckpoint?: (cp: LoadedCheckpoint) => void | Promise<void>;
  /** Called on 410 when the server has no checkpoint: the changes up to resumeFrom are lost to this reader. Without it, the GoneError is thrown. */
  readonly onGap?: (e: GoneError) => void | Promise<void>;
  /** Told of each failed attempt before it retries (a dropped connection, no quorum). */
  readonly onRetry?: (e: Error) => void;
  /** Largest checkpoint downloaded (default 4 GiB). */
  readonly checkpointBytesMax?: number;
}

const RETRY_MS_MAX = 5000;

export async function* follow(client: CairnClient, opts: FollowOptions): AsyncGenerator<Change, void, undefined> {
  let since = opts.since ?? 0;
  let failures = 0;
  const blockSec = opts.blockSec ?? 25;
  for (;;) {
    opts.signal?.throwIfAborted();
    let page;
    try {
      page = await client.listChanges({ since, blockSec, limit: opts.pageLimit ?? 500, ...(opts.tags ? { tags: opts.tags } : {}), ...(opts.consistency ? { consistency: opts.consistency } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
      failures = 0;
    } catch (e) {
      if (e instanceof GoneError) {
        try {
          since = await onGone(client, e, opts);
          continue;
        } catch (err) {
          // A failed download is retried (the next request answers 410 again); anything else ends the loop.
          if (!(err instanceof UnavailableError) || opts.signal?.aborted) throw err;
          e = err;
        }
      } else if (!(e instanceof UnavailableError)) throw e;
      opts.onRetry?.(e as Error);
      failures++;
      await sleep(Math.min(RETRY_MS_MAX, 100 * 2 ** Math.min(failures, 6)), opts.signal);
      continue;
    }
    for (const ch of page.changes) {
      yield ch;
      since = ch.index;
    }
    since = Math.max(since, page.next);
  }
}

/** The index to resume after, once the checkpoint (or the gap) has been handed to the application. */
async function onGone(client: CairnClient, e: GoneError, opts: FollowOptions): Promise<number> {
  const cp = e.checkpoint;
  if (cp === null) {
    if (!opts.onGap) throw e;
    await opts.onGap(e);
    return e.resumeFrom;
  }
  if (!opts.onCheckpoint) throw e;
  let loaded;
  try {
    loaded = await loadCheckpoint(client, cp, opts);
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw new UnavailableError(`loading checkpoint ${cp.id} failed: ${(err as Error).message}`, 0, "checkpoint_download");
  }
  try {
    await opts.onCheckpoint(loaded.checkpoint);
  } finally {
    loaded.close();
  }
  return cp.index;
}

/** Downloads checkpoint `cp`, checks its SHA-256, and opens it read-only with the runtime's SQLite. */
export async function loadCheckpoint(client: CairnClient, cp: CheckpointPointer, opts: { checkpointBytesMax?: number; signal?: AbortSignal } = {}): Promise<{ checkpoint: LoadedCheckpoint; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-client-ckpt-"));
  const path = join(dir, `${cp.id.replace(/[^A-Za-z0-9._-]/g, "_")}.db`);
  try {
    const headers = await downloadTo(client.transport, { path: `/checkpoints/${encodeURIComponent(cp.id)}`, dest: path, bytesMax: opts.checkpointBytesMax ?? 4 * 2 ** 30, timeoutMs: 600_000, ...(opts.signal ? { signal: opts.signal } : {}) });
    await checkSha256(path, headers.get("x-checksum-sha256"));
    const { openReadOnly } = await import("../platform/sqlite.ts");
    const db = openReadOnly(path);
    const page = db.prepare("SELECT key, value, content_type, version FROM kv WHERE key > ? ORDER BY key LIMIT 1000");
    function* kv(): Generator<KvRow> {
      let after = "";
      for (;;) {
        const rows = page.all(after);
        for (const r of rows) yield { key: r.key as string, value: r.value as Uint8Array, contentType: r.content_type as string, version: r.version as number };
        if (rows.length < 1000) return;
        after = rows[rows.length - 1]!.key as string;
      }
    }
    const close = () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    };
    return { checkpoint: { id: cp.id, index: cp.index, path, kv }, close };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function checkSha256(path: string, want: string | null): Promise<void> {
  if (want === null) return;
  const { createHash } = await import("node:crypto");
  const { createReadStream } = await import("node:fs");
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Uint8Array);
  const got = h.digest("hex");
  if (got !== want) throw new Error(`checkpoint ${path}: SHA-256 ${got} differs from the ${want} the server sent; the download was damaged: retry`);
}

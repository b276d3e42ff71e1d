/**
 * Helpers for the checkpoint and data-tool end-to-end tests: running the
 * binary's CLI, writing bulk data, reading a node's whole state (keys and
 * feed) to compare nodes.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { BINARY, type E2ECluster } from "./harness.ts";

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `cairn ARGS...` (the built binary) to its end; killed after `timeoutMs`. */
export async function cli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  const child = spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((res) => child.once("exit", (c) => res(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Deterministic, incompressible-looking bytes for key `i` (so sizes on disk are real). */
export function bulkValue(i: number, bytes: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(new ArrayBuffer(bytes));
  let x = (i + 1) * 2654435761;
  for (let k = 0; k < bytes; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[k] = x & 0xff;
  }
  return out;
}

/** PUTs `count` binary values of `bytes` each as keys `prefix`0000.., `parallel` at a time, through `via()`. */
export async function writeBulk(c: E2ECluster, o: { via: () => string; count: number; bytes: number; prefix?: string; parallel?: number }): Promise<void> {
  const prefix = o.prefix ?? "big/";
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < o.count; i = next++) {
      const key = `${prefix}${String(i).padStart(5, "0")}`;
      await waitFor(`PUT ${key}`, async () => {
        const r = await c.get(o.via(), `/kv/${key}`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: bulkValue(i, o.bytes), signal: AbortSignal.timeout(10_000) });
        await r.arrayBuffer();
        return r.status === 200 || r.status === 201;
      }, 30_000, 50);
    }
  };
  await Promise.all(Array.from({ length: o.parallel ?? 8 }, worker));
}

export interface KvItem {
  key: string;
  version: number;
  contentType: string;
  value?: unknown;
  text?: string;
  base64?: string;
}

/** Every key of node `id` (its local copy), in key order. */
export async function allKeys(c: E2ECluster, id: string): Promise<KvItem[]> {
  const out: KvItem[] = [];
  for (let after = ""; ; ) {
    const r = await c.json(id, `/kv?limit=1000&consistency=stale${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    if (r.status !== 200) throw new Error(`keys of ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    const items = r.body.items as KvItem[];
    out.push(...items);
    if (items.length === 0 || r.body.next === undefined || r.body.next === null) return out;
    after = items[items.length - 1]!.key;
  }
}

export interface FeedItem {
  index: number;
  data: unknown;
  tags: string[];
  ts: number;
}

/** Every retained change of node `id` (its local copy), in order. */
export async function fullFeed(c: E2ECluster, id: string): Promise<FeedItem[]> {
  return (await c.feed(id)) as unknown as FeedItem[];
}

/** The node's applied state as comparable text: keys (with versions and values) and the feed. */
export async function stateOf(c: E2ECluster, id: string): Promise<{ keys: string; feed: string; feedLast: number; keyCount: number }> {
  const keys = await allKeys(c, id);
  const feed = await fullFeed(c, id);
  return {
    keys: JSON.stringify(keys),
    feed: JSON.stringify(feed.map((f) => [f.index, f.data, f.tags])),
    feedLast: feed[feed.length - 1]?.index ?? 0,
    keyCount: keys.length,
  };
}

/** Files of `dir` (none if it does not exist). */
export function filesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Total size of the `.part` files under a node's incoming checkpoint directory. */
export function partBytes(dataDir: string): number {
  const dir = join(dataDir, "checkpoints", "incoming");
  let n = 0;
  for (const f of filesIn(dir)) {
    if (!f.endsWith(".part")) continue;
    try {
      n += statSync(join(dir, f)).size;
    } catch {
      // renamed or removed between the listing and the stat
    }
  }
  return n;
}

/** The msg texts of every log line of `id` (all runs). */
export function messages(c: E2ECluster, id: string): string[] {
  return c.allLogs(id).map((l) => l.msg ?? "");
}

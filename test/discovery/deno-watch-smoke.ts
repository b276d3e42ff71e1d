/**
 * The watcher under whatever runtime runs this file (the Deno check in
 * watch-deno.test.ts runs it with `deno run -A`): an atomic replace and an
 * in-place write are each seen through fs.watch alone, a broken file is
 * logged and ignored, and polling alone sees a change. Prints "ok" and
 * exits 0, or prints what failed and exits 1.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClusterConfig } from "../../src/discovery/load.ts";
import { watchClusterFile } from "../../src/discovery/watch.ts";
import { memoryLogger } from "../../src/util/log.ts";

const DEADLINE_MS = 10_000;

function file(n: number, cluster = "smoke"): string {
  const nodes = Array.from({ length: n }, (_, i) => ({ id: `n${i + 1}`, peer: `10.0.0.${i + 1}:7400`, api: `https://10.0.0.${i + 1}:7401` }));
  return JSON.stringify({ cluster, nodes });
}

async function waitFor(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-smoke-"));
  const path = join(dir, "cluster.json");
  writeFileSync(path, file(3));
  const { log, lines } = memoryLogger();
  const changes: ClusterConfig[] = [];
  const w = watchClusterFile({ path, pollMs: 600_000, debounceMs: 20, logger: log, onChange: (c) => changes.push(c) });
  const polled: ClusterConfig[] = [];
  const p = watchClusterFile({ path, pollMs: 30, fsWatch: false, logger: log, onChange: (c) => polled.push(c) });
  try {
    writeFileSync(`${path}.tmp`, file(4));
    renameSync(`${path}.tmp`, path);
    await waitFor("onChange after an atomic replace", () => changes.length === 1 && changes[0]?.nodes.length === 4);
    writeFileSync(path, file(2));
    await waitFor("onChange after an in-place write", () => changes.length === 2 && changes[1]?.nodes.length === 2);
    writeFileSync(`${path}.tmp`, "{ broken");
    renameSync(`${path}.tmp`, path);
    await waitFor("a warning about the broken file", () => lines.some((l) => l.includes("invalid JSON at line 1")));
    if (w.current()?.nodes.length !== 2) throw new Error("the last good version was not kept");
    writeFileSync(path, file(5, "polled"));
    await waitFor("polling sees the change", () => polled.some((c) => c.cluster === "polled"));
    await waitFor("fs.watch sees the change", () => changes.length === 3);
  } finally {
    w.close();
    p.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => {
    console.log("ok");
    process.exit(0);
  },
  (e: unknown) => {
    console.log(`FAILED: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);

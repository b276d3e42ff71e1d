/** Helpers for the discovery tests: temp dirs, cluster files, polling with a deadline. */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class TempDirs {
  private readonly dirs: string[] = [];

  make(prefix = "cairn-discovery-"): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  cleanup(): void {
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

export interface FileNode {
  id: string;
  peer: string;
  api: string;
  role?: "voter" | "learner";
}

/** n nodes n1..nN on 10.0.0.i:7400 / https://10.0.0.i:7401. */
export function nodes(n: number): FileNode[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `n${i + 1}`,
    peer: `10.0.0.${i + 1}:7400`,
    api: `https://10.0.0.${i + 1}:7401`,
  }));
}

export function clusterJson(over: Record<string, unknown> = {}): string {
  return JSON.stringify({ cluster: "store-42", nodes: nodes(3), ...over }, null, 2);
}

/** Writes `text` to a temp file beside `path` and renames it over `path`. */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Polls `cond` until it holds or `timeoutMs` passes; then fails naming `what`. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

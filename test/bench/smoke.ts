/**
 * What the --quick smoke runs of bench/wrk.ts and bench/growth.ts share: they
 * need Debian's wrk and etcd (ensureTools installs them when it can, else the
 * run is skipped with the reason), and each runs its benchmark as a child
 * with results written to a temp file, which is returned.
 */
import { expect } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureTools, ToolsUnavailableError } from "../../bench/wrkrun.ts";

const ROOT = join(import.meta.dir, "..", "..");

/** Why the smoke run of bench/`name`.ts cannot run here (said once on the console), or null when it can. */
export function smokeSkipWhy(name: string): string | null {
  try {
    ensureTools();
    return null;
  } catch (e) {
    if (!(e instanceof ToolsUnavailableError)) throw e;
    console.warn(`SKIPPED the bench/${name}.ts smoke run: ${e.message}`);
    return e.message;
  }
}

/** `bun run bench/<name>.ts --quick ...args --out FILE`, expected to exit 0; the text it wrote to FILE. */
export function runQuick(o: { name: string; args?: readonly string[]; timeoutMs: number }): string {
  const dir = mkdtempSync(join(tmpdir(), `cairn-${o.name}-smoke-`));
  try {
    const out = join(dir, "RESULTS.md");
    const r = spawnSync(process.execPath, ["run", join(ROOT, "bench", `${o.name}.ts`), "--quick", ...(o.args ?? []), "--out", out], { cwd: ROOT, encoding: "utf8", timeout: o.timeoutMs });
    if (r.status !== 0) console.error(r.stderr.split("\n").slice(-30).join("\n"));
    expect(r.status).toBe(0);
    return readFileSync(out, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
const DENO = join(ROOT, "node_modules", ".bin", "deno");

// The same watcher sources under Deno: fs.watch on the directory (atomic replace and
// in-place write), the broken-file warning, and polling. spawnSync kills it at the timeout.
test.skipIf(!existsSync(DENO))("watchClusterFile works under Deno", () => {
  const r = spawnSync(DENO, ["run", "-A", join("test", "discovery", "deno-watch-smoke.ts")], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  expect(`${r.stdout}${r.stderr}`.trim()).toEndWith("ok");
  expect(r.status).toBe(0);
}, 70_000);

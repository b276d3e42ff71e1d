/**
 * Builds the single `cairn` executable:
 *   bun run build            -> dist/cairn (bun build --compile, workers included)
 *   bun run build --deno     -> also dist/cairn-deno with `deno compile`, if
 *                               Deno's denort runtime is available here
 * bun build --compile uses the bun binary itself as the runtime, so it works
 * offline; deno compile must download denort unless DENORT_BIN points at one.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const out = join(root, "dist");
mkdirSync(out, { recursive: true });

/** Worker entry points must be listed so the compiled binary contains them. */
const WORKERS = ["src/checkpoint/worker.ts"];

function run(cmd: string, args: string[]): number {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  return r.status ?? 1;
}

const bunArgs = ["build", "--compile", "src/main.ts", ...WORKERS, "--outfile", join(out, "cairn")];
if (run(process.execPath, bunArgs) !== 0) {
  console.error("build: bun build --compile failed");
  process.exit(1);
}
console.log(`build: wrote ${join(out, "cairn")}`);

if (process.argv.includes("--deno")) {
  const deno = join(root, "node_modules", ".bin", "deno");
  const denort = process.env.DENORT_BIN;
  if (!denort || !existsSync(denort)) {
    console.error("build: skipping deno compile: set DENORT_BIN to a denort binary (it cannot be downloaded here)");
  } else if (run(deno, ["compile", "-A", "--output", join(out, "cairn-deno"), "src/main.ts"]) !== 0) {
    console.error("build: deno compile failed");
    process.exit(1);
  }
}

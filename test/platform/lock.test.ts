/**
 * The data directory's lock (SQLite's own POSIX lock on DIR/cairn.lock),
 * between real processes under Bun and under Deno: refused with the holder's
 * PID while it lives, free again the moment it dies by SIGKILL.
 */
import { afterEach, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { DataDirRefusedError, lockDataDir } from "../../src/node/datadir.ts";
import { waitFor } from "../helpers/ports.ts";
import { caught, TempDirs } from "./testutil.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BIN = join(ROOT, "node_modules", ".bin");
const HOLDER = join(import.meta.dir, "lockholder.ts");
const RUNTIMES = { bun: [join(BIN, "bun"), HOLDER], deno: [join(BIN, "deno"), "run", "-A", HOLDER] } as const;

const tmp = new TempDirs();
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGKILL");
      await new Promise((r) => c.once("exit", r));
    }
  }
  tmp.cleanup();
});

/** Starts a process that holds `dir`'s lock; resolves once it says it holds it. */
async function holder(runtime: keyof typeof RUNTIMES, dir: string): Promise<ChildProcess> {
  const [cmd, ...args] = RUNTIMES[runtime];
  const child = spawn(cmd, [...args, dir, "hold"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  await waitFor(`${runtime} to hold the lock`, () => out.includes('"held":true'), 30_000, 20);
  return child;
}

function tryIn(runtime: keyof typeof RUNTIMES, dir: string): { held: boolean; problem?: string; message?: string } {
  const [cmd, ...args] = RUNTIMES[runtime];
  const r = spawnSync(cmd, [...args, dir, "try"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

for (const [first, second] of [["bun", "deno"], ["deno", "bun"]] as const) {
  test(`a directory locked by a ${first} process is refused to ${second} and to this process with its PID; after SIGKILL it is free`, async () => {
    const dir = tmp.make();
    const h = await holder(first, dir);
    const other = tryIn(second, dir);
    expect(other.held).toBe(false);
    expect(other.problem).toBe("locked");
    expect(other.message).toContain(`PID ${h.pid}`);
    const here = caught(() => lockDataDir(dir, "test")) as DataDirRefusedError;
    expect(here).toBeInstanceOf(DataDirRefusedError);
    expect(here.message).toContain(`PID ${h.pid}`);
    h.kill("SIGKILL");
    await new Promise((r) => h.once("exit", r));
    // No stale lock: the kernel dropped it with the process.
    expect(tryIn(second, dir).held).toBe(true);
    lockDataDir(dir, "test").release();
  }, 60_000);
}

test("within one process a second lock on the same directory is refused too; release() frees it", () => {
  const dir = tmp.make();
  const a = lockDataDir(dir, "first");
  expect(caught(() => lockDataDir(dir, "second"))).toBeInstanceOf(DataDirRefusedError);
  a.release();
  lockDataDir(dir, "third").release();
});

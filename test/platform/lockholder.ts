/**
 * Takes a data directory's lock and holds it until killed (or, with
 * "try", reports whether it could take it and exits). Run by
 * test/platform/lock.test.ts under Bun and under Deno.
 * Usage: lockholder.ts <dir> hold|try
 */
import { DataDirRefusedError, lockDataDir } from "../../src/node/datadir.ts";

const [dir, mode] = [process.argv[2], process.argv[3]];
if (!dir || (mode !== "hold" && mode !== "try")) throw new Error("usage: lockholder.ts <dir> hold|try");
try {
  const lock = lockDataDir(dir, `lockholder ${mode}`);
  console.log(JSON.stringify({ held: true, pid: process.pid }));
  if (mode === "try") lock.release();
  // Kept referenced: a collected connection is closed, and its lock goes with it.
  else setInterval(() => void lock.path, 60_000);
} catch (e) {
  if (!(e instanceof DataDirRefusedError)) throw e;
  console.log(JSON.stringify({ held: false, problem: e.problem, message: e.message }));
}

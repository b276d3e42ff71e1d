/**
 * The adapter, the store and the state machine under every way cairn runs:
 * `bun run`, `deno run -A` and a `bun build --compile` binary, each on its
 * own data directory and one after another on the same one.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { TempDirs } from "./testutil.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "node_modules/.bin");
const PROBE = join(ROOT, "test/platform/probe.ts");
const TIMEOUT_MS = 60_000;

const tmp = new TempDirs();
afterAll(() => tmp.cleanup());

interface ProbeOut {
  label: string;
  blobOk: boolean;
  diskFullOk: boolean;
  lastIndex: number;
  terms: number[];
  hardState: { term: number; vote: string; commit: number };
  applied: number;
  feed: unknown[];
  value: number[] | null;
  valueIsUint8Array: boolean;
}

function run(cmd: string, args: string[]): ProbeOut {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  const line = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(line) as ProbeOut;
}

const bun = (dir: string, label: string) => run(join(BIN, "bun"), ["run", PROBE, dir, label]);
const deno = (dir: string, label: string) => run(join(BIN, "deno"), ["run", "-A", PROBE, dir, label]);

function compiled(): (dir: string, label: string) => ProbeOut {
  const out = join(tmp.make(), "probe");
  const r = spawnSync(join(BIN, "bun"), ["build", "--compile", PROBE, "--outfile", out], { cwd: ROOT, encoding: "utf8", timeout: TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`bun build --compile failed: ${r.stderr}`);
  return (dir, label) => run(out, [dir, label]);
}

function expectFresh(o: ProbeOut, label: string): void {
  expect(o).toEqual({
    label,
    blobOk: true,
    diskFullOk: true,
    lastIndex: 2,
    terms: [1, 1],
    hardState: { term: 1, vote: "n1", commit: 2 },
    applied: 2,
    feed: [{ from: label }],
    value: [0, 1, 254, 255],
    valueIsUint8Array: true,
  });
}

describe("runtimes", () => {
  test("bun run: BLOBs, store and state machine round-trip through the file", () => {
    expectFresh(bun(tmp.make(), "bun"), "bun");
  }, TIMEOUT_MS);

  test("deno run -A: the same through node:sqlite", () => {
    expectFresh(deno(tmp.make(), "deno"), "deno");
  }, TIMEOUT_MS);

  test("bun build --compile: the same from a single binary", () => {
    expectFresh(compiled()(tmp.make(), "compiled"), "compiled");
  }, TIMEOUT_MS);

  test("one data directory used by Bun, then Deno, then Bun again", () => {
    const dir = tmp.make();
    bun(dir, "b1");
    deno(dir, "d1");
    const o = bun(dir, "b2");
    expect(o.lastIndex).toBe(6);
    expect(o.terms).toEqual([1, 1, 2, 2, 3, 3]);
    expect(o.applied).toBe(6);
    expect(o.feed).toEqual([{ from: "b1" }, { from: "d1" }, { from: "b2" }]);
  }, TIMEOUT_MS);
});

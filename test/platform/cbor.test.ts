/**
 * cbor-x's native string extractor (platform/cbor.ts) under Bun and Deno:
 * it loads without crashing either runtime (the pinned cbor-extract 2.2.2),
 * decodes exactly what the JS decoder does (round trips of string-heavy
 * commands), is used on Bun and not on Deno by default, CAIRN_CBOR
 * overrides, and GET /status says which decoder runs.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { cborImpl, loadNativeCbor } from "../../src/platform/cbor.ts";
import { singleNode, type ApiHarness } from "../api/helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "node_modules/.bin");
const PROBE = join(ROOT, "test/platform/cbor-probe.ts");

function probe(runtime: "bun" | "deno", cbor?: string): { runtime: string; impl: string; roundtrips: number } {
  const args = runtime === "bun" ? ["run", PROBE] : ["run", "-A", PROBE];
  const env = { ...process.env, CAIRN_CBOR: cbor };
  if (cbor === undefined) delete env.CAIRN_CBOR;
  const r = spawnSync(join(BIN, runtime), args, { cwd: ROOT, encoding: "utf8", timeout: 120_000, env });
  // A crash of the add-on is a signal or an abort, not an exception: it shows here.
  if (r.status !== 0) throw new Error(`${runtime} cbor probe (CAIRN_CBOR=${cbor}) exited ${r.status} ${r.signal ?? ""}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

test("under Bun the native extractor loads and round-trips string-heavy commands; CAIRN_CBOR=js keeps JS", () => {
  expect(probe("bun")).toEqual({ runtime: "bun", impl: "native", roundtrips: 200 });
  expect(probe("bun", "js")).toEqual({ runtime: "bun", impl: "js", roundtrips: 200 });
}, 240_000);

test("under Deno the native extractor loads and round-trips too (CAIRN_CBOR=native); by default Deno runs JS", () => {
  expect(probe("deno", "native")).toEqual({ runtime: "deno", impl: "native", roundtrips: 200 });
  expect(probe("deno")).toEqual({ runtime: "deno", impl: "js", roundtrips: 200 });
}, 240_000);

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => await h.close());

test("GET /status says which CBOR decoder runs", async () => {
  expect((await (await h.req("/status")).json()).cbor).toBe(cborImpl());
  expect(await loadNativeCbor({})).toBe("native");
  expect((await (await h.req("/status")).json()).cbor).toBe("native");
});

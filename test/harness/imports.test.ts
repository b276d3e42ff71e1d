/**
 * Who may import whom outside src/: bench/ and harness/ import nothing from
 * test/ (harness/ is the code they share), and src/ imports neither (the
 * binary ships none of it).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { sources } from "../helpers/sources.ts";

const root = join(import.meta.dir, "..", "..");

/** Every relative import of the files under `dir` that resolves into one of `into` (top-level folders). */
function importsInto(dir: string, into: readonly string[]): string[] {
  const bad: string[] = [];
  for (const p of sources(join(root, dir))) {
    for (const m of readFileSync(p, "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) {
      const target = relative(root, join(p, "..", m[1]!));
      if (into.some((top) => target === top || target.startsWith(`${top}/`))) bad.push(`${relative(root, p)}: ${m[1]}`);
    }
  }
  return bad;
}

test("bench/ imports nothing from test/", () => {
  expect(importsInto("bench", ["test"])).toEqual([]);
});

test("harness/ imports nothing from test/ or bench/", () => {
  expect(importsInto("harness", ["test", "bench"])).toEqual([]);
});

test("src/ imports nothing from test/, bench/ or harness/", () => {
  expect(importsInto("src", ["test", "bench", "harness"])).toEqual([]);
});

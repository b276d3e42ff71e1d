/**
 * Who may import whom outside src/: bench/ and harness/ import nothing from
 * test/ (harness/ is the code they share), and src/ imports neither (the
 * binary ships none of it).
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..", "..");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

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

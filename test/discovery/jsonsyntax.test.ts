import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { findJsonProblem, JSON_DEPTH_MAX, lineColumn } from "../../src/discovery/jsonsyntax.ts";

function parses(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

describe("findJsonProblem agrees with JSON.parse", () => {
  test("every JSON text fast-check makes is accepted", () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 6 }), (s) => {
        expect(findJsonProblem(s)).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });

  test("a text JSON.parse refuses is reported, and a text it takes is accepted unless a key repeats", () => {
    // Strings over JSON's own alphabet, so that many are nearly valid.
    const piece = fc.constantFrom(...'{}[]:,"\\ \n\t0123456789-+.eEtruefalsn/*\'ab'.split(""), '"a"', '"b"', "true", "null", "1.5e3");
    const text = fc.array(piece, { maxLength: 30 }).map((a) => a.join(""));
    const mutated = fc.tuple(fc.json({ maxDepth: 3 }), fc.nat(), piece).map(([j, at, p]) => {
      const i = at % (j.length + 1);
      return j.slice(0, i) + p + j.slice(i + 1);
    });
    fc.assert(
      fc.property(fc.oneof(text, mutated), (s) => {
        const problem = findJsonProblem(s);
        if (!parses(s)) expect(problem).not.toBeNull();
        else if (problem) expect(problem.message).toStartWith("duplicate key");
        if (problem) {
          expect(problem.offset).toBeGreaterThanOrEqual(0);
          expect(problem.offset).toBeLessThanOrEqual(s.length);
          expect(lineColumn(s, problem.offset)).toEqual({ line: problem.line, column: problem.column });
        }
      }),
      { numRuns: 5000 },
    );
  });
});

test("nesting deeper than JSON_DEPTH_MAX is refused", () => {
  const deep = "[".repeat(JSON_DEPTH_MAX + 2) + "]".repeat(JSON_DEPTH_MAX + 2);
  expect(findJsonProblem(deep)?.message).toContain("nesting deeper than");
  const ok = "[".repeat(JSON_DEPTH_MAX) + "]".repeat(JSON_DEPTH_MAX);
  expect(findJsonProblem(ok)).toBeNull();
});

test("duplicate keys are found in nested objects, and equal keys in sibling objects are fine", () => {
  expect(findJsonProblem('{"a": {"x": 1}, "b": {"x": 2}}')).toBeNull();
  expect(findJsonProblem('{"a": [{"x": 1, "x": 2}]}')?.message).toBe('duplicate key "x" (first at line 1, column 9)');
  expect(findJsonProblem('{"\\u0061": 1, "a": 2}')?.message).toStartWith('duplicate key "a"');
});

test("columns count from 1 after the last newline, with CRLF line ends", () => {
  const p = findJsonProblem('{\r\n  "a": 1,\r\n  "b" 2\r\n}');
  expect(p).toMatchObject({ line: 3, column: 7 });
});

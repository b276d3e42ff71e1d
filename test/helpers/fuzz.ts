/**
 * Shared settings of the fast-check property and fuzz tests: a fixed seed
 * and a small number of runs in CI (seconds), more on demand:
 *   CAIRN_FUZZ_RUNS=100000 bun test test/...   (runs per property instead of each test's CI number)
 *   CAIRN_FUZZ_SEED=123                         (another fixed seed; fast-check prints the seed of a failure)
 */
import fc from "fast-check";

const SEED_DEFAULT = 20260101;

/** fast-check parameters: `ciRuns` in CI, CAIRN_FUZZ_RUNS runs per property on demand. */
export function fuzzParams<T>(ciRuns: number, more: fc.Parameters<T> = {}): fc.Parameters<T> {
  const env = Number(process.env.CAIRN_FUZZ_RUNS ?? "");
  const numRuns = Number.isSafeInteger(env) && env > 0 ? env : ciRuns;
  const seedEnv = Number(process.env.CAIRN_FUZZ_SEED ?? "");
  const seed = Number.isSafeInteger(seedEnv) && process.env.CAIRN_FUZZ_SEED ? seedEnv : SEED_DEFAULT;
  return { seed, numRuns, endOnFailure: true, ...more };
}

/** The timeout a test of `ciRuns` runs at `msPerRun` needs, scaled like fuzzParams. */
export function fuzzTimeoutMs(ciRuns: number, msPerRun: number): number {
  const runs = fuzzParams(ciRuns).numRuns ?? ciRuns;
  return Math.max(30_000, runs * msPerRun * 3);
}

/** Keys that objects in JavaScript treat specially, and other odd ones. */
export const ODD_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "", "0", "-1", "1e3", "__defineGetter__", " "];

/** One UTF-16 code unit of any value: lone surrogates included. */
export const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n));

/** Strings of unusual code points: astral, controls, BOM, U+2028, noncharacters, lone surrogates (when `lone`). */
export function oddString(lone: boolean): fc.Arbitrary<string> {
  const units: fc.Arbitrary<string>[] = [
    fc.string({ unit: "binary", maxLength: 3 }),
    fc.constantFrom("\u0000", "\u001f", "\u007f", "\ufeff", "\u2028", "\u2029", "\uffff", "\ufffe", "\ud83d\ude00", "\u{10ffff}", "\\", '"', "\n", "\r", "é", "e\u0301"),
  ];
  if (lone) units.push(fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff"), anyCodeUnit);
  return fc.array(fc.oneof(...units), { maxLength: 8 }).map((parts) => parts.join(""));
}

/** Any JSON value with odd keys and strings; `lone` adds lone surrogates. */
export function oddJson(opts: { lone: boolean; maxDepth?: number }): fc.Arbitrary<unknown> {
  const str = oddString(opts.lone);
  const key = fc.oneof(fc.constantFrom(...ODD_KEYS), str);
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof(
      { maxDepth: opts.maxDepth ?? 4, depthSize: "small" },
      fc.constant(null),
      fc.boolean(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      str,
      fc.array(tie("value"), { maxLength: 4 }),
      fc.array(fc.tuple(key, tie("value")), { maxLength: 4 }).map(objectOf),
    ),
  }));
  return value;
}

/** An object with exactly these own keys ("__proto__" included: defineProperty, not assignment). */
export function objectOf(entries: [string, unknown][]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

/** True when some string or key in v holds an unpaired surrogate (independent of src/). */
export function hasLoneSurrogate(v: unknown): boolean {
  const bad = (s: string) => /\p{Surrogate}/u.test(s);
  if (typeof v === "string") return bad(v);
  if (Array.isArray(v)) return v.some(hasLoneSurrogate);
  if (typeof v === "object" && v !== null) return Object.entries(v).some(([k, x]) => bad(k) || hasLoneSurrogate(x));
  return false;
}

/** Nesting depth of a JSON value (a scalar is 0). */
export function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf));
  if (typeof v === "object" && v !== null) return 1 + Math.max(0, ...Object.values(v).map(depthOf));
  return 0;
}

/** JSON text as a parser reads it back: the canonical form to compare data by. */
export function canonical(v: unknown): string {
  return JSON.stringify(JSON.parse(JSON.stringify(v)));
}

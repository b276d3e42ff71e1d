import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { newToken, parseTokensText, sha256Hex, TokensFileError, tokensFileText, TokenSet } from "../../src/api/tokens.ts";

const PATH = "/etc/cairn/tokens.json";
const HEX = "a".repeat(64);

function problems(text: string): readonly string[] {
  const r = parseTokensText(text, PATH);
  if (r.ok) throw new Error(`expected a refusal of ${text}`);
  expect(r.error).toBeInstanceOf(TokensFileError);
  expect(r.error.message).toStartWith(`tokens file ${PATH}: `);
  return r.error.problems;
}

describe("the tokens file parser", () => {
  test('{"admin": "s3cret"} (the old format) is refused with the place, and yields no token', () => {
    const p = problems('{"admin": "s3cret"}');
    expect(p.some((l) => l.includes('unknown key "admin"'))).toBe(true);
    expect(p.some((l) => l.startsWith("tokens: missing"))).toBe(true);
    // The secret is never echoed back.
    expect(p.join("\n")).not.toContain("s3cret");
  });

  test('a string where the list should be is refused: "tokens": "s3cret"', () => {
    expect(problems('{"tokens": "s3cret"}')).toEqual([
      'tokens: expected a list of at most 1000 entries {"name", "role", "sha256"}, got a string of 6 characters',
    ]);
  });

  test("each bad field is named by its place", () => {
    const p = problems(JSON.stringify({ tokens: [{ name: "ok", role: "root", sha256: HEX }, { name: "b", role: "read", sha256: "ABC" }] }));
    expect(p[0]).toStartWith("tokens[0].role: expected");
    expect(p[1]).toStartWith("tokens[1].sha256: expected the SHA-256");
    expect(problems(JSON.stringify({ tokens: [{ name: "a", role: "read", sha256: HEX, secret: "x" }] }))[0]).toStartWith(
      'tokens[0]: unknown key "secret"',
    );
  });

  test("duplicate names and duplicate digests are refused", () => {
    const p = problems(JSON.stringify({ tokens: [{ name: "a", role: "read", sha256: HEX }, { name: "a", role: "admin", sha256: "b".repeat(64) }] }));
    expect(p).toEqual(['tokens[1].name: duplicate name "a" (also tokens[0])']);
    const d = problems(JSON.stringify({ tokens: [{ name: "a", role: "read", sha256: HEX }, { name: "b", role: "admin", sha256: HEX }] }));
    expect(d[0]).toStartWith("tokens[1].sha256: the same digest as tokens[0]");
  });

  test("syntax errors say line and column; empty and oversized files are refused", () => {
    expect(problems('{\n  "tokens": [,]\n}')[0]).toMatch(/^invalid JSON at line 2, column \d+/);
    expect(problems("  \n")[0]).toBe("the file is empty");
    expect(problems(" ".repeat(2 << 20))[0]).toContain("more than the");
  });

  test("a valid file gives its tokens, found by hash, in any role", () => {
    const t = newToken();
    expect(t).toMatch(/^cairn_[A-Za-z0-9_-]{43}$/);
    const r = parseTokensText(tokensFileText([{ name: "app", role: "write", sha256: sha256Hex(t) }]), PATH);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.tokens.lookup(t)).toEqual({ name: "app", role: "write" });
    expect(r.tokens.lookup(t.slice(0, -1))).toBeNull();
    expect(r.tokens.lookup(sha256Hex(t))).toBeNull(); // the digest is not the token
    expect(parseTokensText('{"tokens": []}', PATH).ok).toBe(true);
  });
});

/** The rules, written independently of the zod schema: what a valid file is. */
function validByHand(raw: unknown): boolean {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return false;
  const keys = Object.keys(raw);
  if (keys.length !== 1 || keys[0] !== "tokens") return false;
  const list = (raw as { tokens: unknown }).tokens;
  if (!Array.isArray(list) || list.length > 1000) return false;
  const names = new Set<string>();
  const digests = new Set<string>();
  for (const e of list) {
    if (e === null || typeof e !== "object" || Array.isArray(e)) return false;
    const k = Object.keys(e).sort();
    if (k.join(",") !== "name,role,sha256") return false;
    const { name, role, sha256 } = e as Record<string, unknown>;
    if (typeof name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name) || names.has(name)) return false;
    if (role !== "read" && role !== "write" && role !== "admin") return false;
    if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256) || digests.has(sha256)) return false;
    names.add(name);
    digests.add(sha256);
  }
  return true;
}

describe("the tokens file parser under random and mutated input (fast-check, fixed seed)", () => {
  const entry = fc.record({
    name: fc.oneof(fc.constantFrom("admin", "app-1", "ci.bot"), fc.string({ maxLength: 5 })),
    role: fc.oneof(fc.constantFrom("read", "write", "admin"), fc.string({ maxLength: 5 })),
    sha256: fc.oneof(fc.constantFrom(HEX, "b".repeat(64), "0".repeat(64)), fc.string({ maxLength: 3 })),
  });
  const file = fc.oneof(
    fc.record({ tokens: fc.array(entry, { maxLength: 4 }) }).map((o) => JSON.stringify(o)),
    fc.dictionary(fc.constantFrom("tokens", "admin", "read", "write"), fc.oneof(fc.string(), fc.array(fc.string()), fc.array(entry))).map((o) => JSON.stringify(o)),
    fc.json({ maxDepth: 4 }),
  );
  const mutated = fc.tuple(file, fc.nat(), fc.constantFrom('"', "{", "}", "[", "]", ",", ":", "a", "0", " ", "\\", "\u0000")).map(([j, at, c]) => {
    const i = at % (j.length + 1);
    return j.slice(0, i) + c + j.slice(i + 1);
  });

  test("never throws; refuses with a TokensFileError, or gives exactly the tokens of a valid file", () => {
    fc.assert(
      fc.property(fc.oneof(file, mutated, fc.string()), (text) => {
        const r = parseTokensText(text, PATH);
        let raw: unknown;
        let json = true;
        try {
          raw = JSON.parse(text);
        } catch {
          json = false;
        }
        if (!r.ok) {
          expect(r.error).toBeInstanceOf(TokensFileError);
          expect(r.error.problems.length).toBeGreaterThan(0);
          return;
        }
        // Accepted: the text must be valid JSON of a valid file, and the set exactly its entries.
        expect(json).toBe(true);
        expect(validByHand(raw)).toBe(true);
        expect(r.tokens).toBeInstanceOf(TokenSet);
        expect(r.tokens.entries).toEqual((raw as { tokens: unknown[] }).tokens as never);
      }),
      { numRuns: 3000, seed: 8 },
    );
  });

  test("no single character, and no string, is ever a token of a file that was refused or of the old format", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), fc.string({ minLength: 0, maxLength: 2 }), (secret, probe) => {
        for (const text of [JSON.stringify({ admin: secret }), JSON.stringify({ tokens: secret }), JSON.stringify({ tokens: [secret] })]) {
          const r = parseTokensText(text, PATH);
          expect(r.ok).toBe(false);
        }
        const r = parseTokensText(JSON.stringify({ tokens: [] }), PATH);
        expect(r.ok && r.tokens.lookup(probe)).toBeNull();
      }),
      { numRuns: 500, seed: 8 },
    );
  });
});

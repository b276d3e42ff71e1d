/**
 * The API tokens file (tokens.json) and the set of tokens it holds.
 *
 * ```json
 * { "tokens": [ { "name": "admin", "role": "admin", "sha256": "<64 lowercase hex>" } ] }
 * ```
 *
 * - The file holds SHA-256 digests of tokens, never the tokens: it can be
 *   copied to every host, read by backups, shown in a diff, without giving
 *   anyone access. A token is `cairn_` + 32 random bytes in base64url, so a
 *   plain hash (no salt, no slow KDF) is enough: there is nothing to guess.
 * - Strict: unknown keys, a non-list `tokens`, a bad role, a digest that is
 *   not 64 lowercase hex digits, duplicate names or duplicate digests are all
 *   errors that name the place (`tokens[2].role`). Nothing is ever made into
 *   a token from a file with any problem: the whole file is refused.
 * - A presented token is hashed and compared with every digest in constant
 *   time (crypto.timingSafeEqual), so neither the position of a difference
 *   nor which entry matched shows in the timing.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { resolve } from "node:path";
import { z } from "zod";
import { findJsonProblem } from "../discovery/jsonsyntax.ts";
import { formatPath, show } from "../discovery/validate.ts";

export type Role = "read" | "write" | "admin";
export const ROLES: readonly Role[] = ["read", "write", "admin"];
export const ROLE_RANK: Readonly<Record<Role, number>> = { read: 1, write: 2, admin: 3 };

/** A tokens file larger than this is refused unread (1000 entries take about 120 KiB). */
export const TOKENS_FILE_BYTES_MAX = 1 << 20;
export const TOKENS_MAX = 1000;
export const TOKEN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const TOKEN_PREFIX = "cairn_";
/** A presented token longer than this is refused without hashing. */
export const PRESENTED_TOKEN_CHARS_MAX = 512;
const TOKEN_RANDOM_BYTES = 32;
const PROBLEMS_MAX = 20;

export type TokensFileErrorKind = "read" | "tooLarge" | "encoding" | "empty" | "syntax" | "invalid";

/** A tokens file that cannot be used; `message` names the file, the place and the problem. */
export class TokensFileError extends Error {
  override name = "TokensFileError";
  readonly problems: readonly string[];
  constructor(
    readonly kind: TokensFileErrorKind,
    readonly path: string,
    problems: readonly string[],
  ) {
    const first = problems[0] ?? "unknown problem";
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})` : "";
    super(`tokens file ${path}: ${first}${more}`);
    this.problems = problems.length > 0 ? problems : [first];
  }
}

const entrySchema = z
  .object({
    name: z.string().regex(TOKEN_NAME_RE),
    role: z.enum(["read", "write", "admin"]),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();

const fileSchema = z.object({ tokens: z.array(entrySchema).max(TOKENS_MAX) }).strict();

export type TokenEntry = z.infer<typeof entrySchema>;

const HINTS: Readonly<Record<string, string>> = {
  "": 'a JSON object {"tokens": [...]}',
  tokens: `a list of at most ${TOKENS_MAX} entries {"name", "role", "sha256"}`,
  "tokens[]": 'an object {"name": "...", "role": "read" | "write" | "admin", "sha256": "<64 hex digits>"}',
  name: 'a name of letters, digits, ".", "_" and "-", at most 64 characters, such as "admin"',
  role: '"read", "write" or "admin"',
  sha256: "the SHA-256 of the token as 64 lowercase hex digits (cairn token add writes it)",
};

/** The tokens of one valid file. Immutable; a reload makes a new one. */
export class TokenSet {
  private readonly digests: readonly { readonly name: string; readonly role: Role; readonly digest: Buffer }[];
  constructor(readonly entries: readonly TokenEntry[]) {
    this.digests = entries.map((e) => ({ name: e.name, role: e.role, digest: Buffer.from(e.sha256, "hex") }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** The entry a presented token belongs to, or null. Compares against every entry in constant time each. */
  lookup(token: string): { readonly name: string; readonly role: Role } | null {
    if (token.length === 0 || token.length > PRESENTED_TOKEN_CHARS_MAX) return null;
    const d = createHash("sha256").update(token, "utf8").digest();
    let found: { name: string; role: Role } | null = null;
    for (const e of this.digests) {
      if (timingSafeEqual(d, e.digest) && found === null) found = { name: e.name, role: e.role };
    }
    return found;
  }
}

export type TokensParse = { ok: true; tokens: TokenSet } | { ok: false; error: TokensFileError };

/** Decodes, parses and validates the bytes of a tokens file found at `path`. Never throws. */
export function parseTokensBytes(bytes: Uint8Array, path: string): TokensParse {
  const abs = resolve(path);
  if (bytes.byteLength > TOKENS_FILE_BYTES_MAX) return { ok: false, error: tooLarge(abs, bytes.byteLength) };
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, error: new TokensFileError("encoding", abs, ["the file is not valid UTF-8 text"]) };
  }
  return parseTokensText(text, abs);
}

export function tooLarge(path: string, size: number): TokensFileError {
  return new TokensFileError("tooLarge", path, [`the file is ${size} bytes, more than the ${TOKENS_FILE_BYTES_MAX} a tokens file may have`]);
}

/** Parses and validates the text of a tokens file found at `path`. Never throws. */
export function parseTokensText(text: string, path: string): TokensParse {
  const abs = resolve(path);
  const body = text.replace(/^\uFEFF/, "");
  if (body.length > TOKENS_FILE_BYTES_MAX) return { ok: false, error: tooLarge(abs, body.length) };
  if (body.trim() === "") return { ok: false, error: new TokensFileError("empty", abs, ["the file is empty"]) };
  const syntax = findJsonProblem(body);
  if (syntax) {
    return { ok: false, error: new TokensFileError("syntax", abs, [`invalid JSON at line ${syntax.line}, column ${syntax.column}: ${syntax.message}`]) };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (e) {
    return { ok: false, error: new TokensFileError("syntax", abs, [`invalid JSON: ${(e as Error).message}`]) };
  }
  const v = validate(raw);
  return v instanceof TokenSet ? { ok: true, tokens: v } : { ok: false, error: new TokensFileError("invalid", abs, v) };
}

function validate(raw: unknown): TokenSet | string[] {
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) return parsed.error.issues.slice(0, PROBLEMS_MAX).map((i) => formatIssue(i, raw));
  const out: string[] = [];
  const names = new Map<string, number>();
  const digests = new Map<string, number>();
  parsed.data.tokens.forEach((t, i) => {
    const n = names.get(t.name);
    if (n !== undefined) out.push(`tokens[${i}].name: duplicate name ${show(t.name)} (also tokens[${n}])`);
    else names.set(t.name, i);
    const d = digests.get(t.sha256);
    if (d !== undefined) out.push(`tokens[${i}].sha256: the same digest as tokens[${d}]; each token needs its own`);
    else digests.set(t.sha256, i);
  });
  return out.length > 0 ? out.slice(0, PROBLEMS_MAX) : new TokenSet(parsed.data.tokens);
}

function formatIssue(issue: z.ZodIssue, raw: unknown): string {
  const where = formatPath(issue.path);
  const prefix = where === "" ? "the file" : where;
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => JSON.stringify(k)).join(", ");
    const known = issue.path.length === 0 ? '"tokens"' : '"name", "role", "sha256"';
    return `${prefix}: unknown key${issue.keys.length > 1 ? "s" : ""} ${keys}; known keys are ${known}`;
  }
  let value: unknown = raw;
  for (const p of issue.path) value = value !== null && typeof value === "object" ? (value as Record<string, unknown>)[p] : undefined;
  const last = issue.path[issue.path.length - 1];
  const hint = last === undefined ? HINTS[""] : typeof last === "number" ? HINTS["tokens[]"] : (HINTS[last] ?? "a valid value");
  if (value === undefined) return `${prefix}: missing; expected ${hint}`;
  if (issue.code === "too_big" && Array.isArray(value)) return `${prefix}: has ${value.length} entries, at most ${TOKENS_MAX} are allowed`;
  // Never echo a value that may be a secret someone put in the file by mistake: show its type only.
  return `${prefix}: expected ${hint}, got ${describe(value)}`;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === "string") return `a string of ${v.length} characters`;
  if (typeof v === "object") return "an object";
  return show(v);
}

// ---------------------------------------------------------------- making tokens

/** A new random token: `cairn_` + 32 random bytes, base64url. */
export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_RANDOM_BYTES).toString("base64url");
}

export function sha256Hex(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** The text of a tokens file holding `entries` (validated by the caller). */
export function tokensFileText(entries: readonly TokenEntry[]): string {
  return JSON.stringify({ tokens: entries.map((e) => ({ name: e.name, role: e.role, sha256: e.sha256 })) }, null, 2) + "\n";
}

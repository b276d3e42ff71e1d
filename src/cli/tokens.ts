/**
 * `cairn token add|revoke|list --tokens FILE`: the API tokens file, edited
 * atomically (a temporary file beside it, renamed over), so a running node
 * that reloads it never reads half a file. A new token is printed once and
 * only its SHA-256 is stored.
 */
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { loadTokensFileSync } from "../api/tokens-watch.ts";
import { newToken, type Role, ROLES, sha256Hex, TOKEN_NAME_RE, type TokenEntry, TOKENS_MAX, tokensFileText } from "../api/tokens.ts";
import { parse, UsageError } from "./args.ts";

export const TOKEN_USAGE = `cairn token add --tokens FILE --name NAME --role read|write|admin
cairn token revoke --tokens FILE --name NAME
cairn token list --tokens FILE

Edits the API tokens file (cairn init writes DIR/tokens.json). The file holds
SHA-256 hashes only: add prints the new token ONCE, and it is not stored
anywhere. Copy the file to every host (running nodes reload it within a
second: a revoked token stops working then). list prints names and roles.`;

const OPTIONS = {
  tokens: { type: "string" },
  name: { type: "string" },
  role: { type: "string" },
} as const;

/** Writes `text` to `path` through a temporary file in the same directory and a rename. */
export function writeAtomic(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new UsageError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

/** A new token of `role` named `name`: its entry (hash) and the token itself (to print once). */
export function makeToken(name: string, role: Role): { entry: TokenEntry; token: string } {
  const token = newToken();
  return { entry: { name, role, sha256: sha256Hex(token) }, token };
}

/** For `cairn init`: DIR/tokens.json with one admin token; returns the path and the token (print it once). */
export function writeInitialTokens(dir: string): { path: string; token: string } {
  const path = join(resolve(dir), "tokens.json");
  const { entry, token } = makeToken("admin", "admin");
  writeAtomic(path, tokensFileText([entry]));
  return { path, token };
}

/** The lines `cairn init` prints about the token it made. */
export function initialTokenLines(t: { path: string; token: string }): string[] {
  return [
    `wrote ${t.path} (API tokens, hashes only: copy it to every host)`,
    `admin API token (shown once, NOT stored anywhere; save it now): ${t.token}`,
    "use it with: export CAIRN_TOKEN=<token> (or --token, or the header Authorization: Bearer <token>)",
  ];
}

function readEntries(path: string, mayBeMissing: boolean): TokenEntry[] {
  if (mayBeMissing && !existsSync(path)) return [];
  const r = loadTokensFileSync(path);
  if (!r.ok) throw new UsageError(`${r.error.message}; fix it first (nothing was changed)`);
  return [...r.tokens.entries];
}

function need(v: string | undefined, flag: string): string {
  if (!v) throw new UsageError(`--${flag} is required\n\n${TOKEN_USAGE}`);
  return v;
}

export async function token(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, OPTIONS, TOKEN_USAGE);
  const sub = positionals[0];
  if (positionals.length !== 1 || (sub !== "add" && sub !== "revoke" && sub !== "list")) {
    throw new UsageError(`say add, revoke or list${sub ? `, not "${positionals.join(" ")}"` : ""}\n\n${TOKEN_USAGE}`);
  }
  const path = resolve(need(values.tokens, "tokens"));
  if (sub === "list") {
    for (const e of readEntries(path, false)) console.log(`${e.name}\t${e.role}`);
    return 0;
  }
  const name = need(values.name, "name");
  if (!TOKEN_NAME_RE.test(name)) throw new UsageError(`--name ${JSON.stringify(name)} is invalid: use 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)`);
  return sub === "add" ? add(path, name, values.role) : revoke(path, name);
}

function add(path: string, name: string, role: string | undefined): number {
  if (!ROLES.includes(role as Role)) throw new UsageError(`--role must be read, write or admin, got ${JSON.stringify(role ?? "")}`);
  const entries = readEntries(path, true);
  if (entries.some((e) => e.name === name)) throw new UsageError(`a token named "${name}" exists already in ${path}: revoke it first or pick another --name`);
  if (entries.length >= TOKENS_MAX) throw new UsageError(`${path} has ${TOKENS_MAX} tokens, the most a file may have: revoke some first`);
  const made = makeToken(name, role as Role);
  writeAtomic(path, tokensFileText([...entries, made.entry]));
  console.error(`added "${name}" (${role}) to ${path}; copy the file to every host`);
  console.log(`${role} API token "${name}" (shown once, NOT stored anywhere; save it now): ${made.token}`);
  return 0;
}

function revoke(path: string, name: string): number {
  const entries = readEntries(path, false);
  const left = entries.filter((e) => e.name !== name);
  if (left.length === entries.length) throw new UsageError(`no token named "${name}" in ${path} (names: ${entries.map((e) => e.name).join(", ") || "none"})`);
  writeAtomic(path, tokensFileText(left));
  console.log(`revoked "${name}" in ${path}; nodes using this file stop accepting it within a second (copy the file to every host)`);
  return 0;
}

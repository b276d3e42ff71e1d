/**
 * Bearer tokens with three roles: admin includes write, write includes read.
 * GET and HEAD need read, other methods write, /admin/* admin. /health is
 * always open (liveness probes carry no secrets), and so is the dashboard
 * page itself (static HTML; its data comes from /status, which is not).
 */
import { ApiError } from "./errors.ts";

export type Role = "read" | "write" | "admin";

export interface Tokens {
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly admin: readonly string[];
}

const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };

/** Paths anyone may call, whatever the tokens. */
const OPEN_PATHS = new Set(["/health", "/"]);

export function requiredRole(method: string, path: string): Role | null {
  if (OPEN_PATHS.has(path) && (method === "GET" || method === "HEAD")) return null;
  if (path === "/admin" || path.startsWith("/admin/")) return "admin";
  return method === "GET" || method === "HEAD" ? "read" : "write";
}

/** Compares in time independent of where the strings differ (length still shows). */
function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The highest role a token holds, or null for an unknown token. Checks every token. */
export function roleOf(tokens: Tokens, token: string): Role | null {
  let best: Role | null = null;
  for (const role of ["read", "write", "admin"] as const) {
    for (const t of tokens[role]) {
      if (t !== "" && sameSecret(t, token) && (best === null || RANK[role] > RANK[best])) best = role;
    }
  }
  return best;
}

const CHALLENGE = 'Bearer realm="cairn"';

/** Throws 401 (no or unknown token) or 403 (a token without the role). */
export function authorize(tokens: Tokens, req: { method: string; path: string; authorization: string | null }): void {
  const need = requiredRole(req.method, req.path);
  if (need === null) return;
  const m = req.authorization === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(req.authorization);
  if (!m) {
    throw new ApiError(401, "unauthorized", `this API needs a bearer token with the ${need} role: send Authorization: Bearer TOKEN`, {
      headers: { "www-authenticate": CHALLENGE },
    });
  }
  const role = roleOf(tokens, m[1]!);
  if (role === null) {
    throw new ApiError(401, "unauthorized", "the bearer token is not known to this node: check the token", {
      headers: { "www-authenticate": `${CHALLENGE}, error="invalid_token"` },
    });
  }
  if (RANK[role] < RANK[need]) {
    throw new ApiError(403, "forbidden", `${req.method} ${req.path} needs the ${need} role; this token has ${role}`);
  }
}

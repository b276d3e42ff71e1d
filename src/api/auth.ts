/**
 * Who may call the API. Three roles: admin includes write, write includes
 * read. GET and HEAD need read, other methods write, /admin/* admin. /health
 * is always open (liveness probes carry no secrets), and so is the dashboard
 * page itself (static HTML; its data comes from /status, which is not) and
 * /openapi.json (the API's description, no data).
 *
 * Two ways in: a bearer token from the tokens file (tokens.ts; hashed,
 * compared in constant time, hot-reloaded), or a TLS client certificate
 * signed by the API client CA, whose role is in a SAN URI `cairn:role:R`
 * (the TLS front in platform/http.ts verifies the chain and hands the role
 * over). A token, when sent, decides; otherwise the certificate does.
 *
 * Failed authentications are counted by reason (/metrics) and limited per
 * client address (authlimit.ts): past the limit the address gets 429.
 */
import { FailureLimiter } from "./authlimit.ts";
import { ApiError } from "./errors.ts";
import { ROLE_RANK, type Role, type TokenSet } from "./tokens.ts";

export type { Role } from "./tokens.ts";

/** Paths anyone may call, whatever the tokens. */
const OPEN_PATHS = new Set(["/health", "/", "/openapi.json"]);

export function requiredRole(method: string, path: string): Role | null {
  if (OPEN_PATHS.has(path) && (method === "GET" || method === "HEAD")) return null;
  if (path === "/admin" || path.startsWith("/admin/")) return "admin";
  return method === "GET" || method === "HEAD" ? "read" : "write";
}

/** What the connection says about the client (platform/http.ts fills it in). */
export interface ClientCert {
  /** The role its certificate names, or null when it names none (or several different ones). */
  readonly role: Role | null;
  /** Subject CN, for logs and errors. */
  readonly name: string;
}

export interface AuthRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | null;
  /** The client's IP address as the runtime reports it; null when it does not. */
  readonly clientAddress: string | null;
  /** A verified client certificate, or null without one. */
  readonly cert: ClientCert | null;
}

export const FAILURE_REASONS = ["missing", "malformed", "unknown_token", "cert_without_role", "forbidden", "rate_limited"] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

const CHALLENGE = 'Bearer realm="cairn"';
const BEARER_RE = /^Bearer[ \t]+(\S+)[ \t]*$/i;

export interface AuthenticatorOptions {
  /** The tokens now in force (a hot-reloaded file gives a new set). */
  readonly tokens: () => TokenSet;
  /** True when a client CA is configured (the 401 message mentions certificates). */
  readonly clientCa?: boolean;
  readonly limiter?: FailureLimiter;
}

/** Authentication by token or client certificate. Without one (no-auth), createApp lets every request through. */
export class Authenticator {
  private readonly failures = new Map<FailureReason, number>(FAILURE_REASONS.map((r) => [r, 0]));
  readonly limiter: FailureLimiter;
  constructor(private readonly opts: AuthenticatorOptions) {
    this.limiter = opts.limiter ?? new FailureLimiter();
  }

  get clientCa(): boolean {
    return this.opts.clientCa === true;
  }

  tokenCount(): number {
    return this.opts.tokens().size;
  }

  /** Throws 401 (no or unknown credentials), 403 (too low a role) or 429 (too many failures from this address). */
  check(req: AuthRequest): void {
    const need = requiredRole(req.method, req.path);
    if (need === null) return;
    const address = req.clientAddress ?? "unknown";
    const wait = this.limiter.blockedSec(address);
    if (wait > 0) {
      this.count("rate_limited");
      throw new ApiError(429, "too_many_failures", `too many failed authentications from ${address}: retry in ${wait} s with a valid token`, {
        retryAfterSec: wait,
      });
    }
    const role = this.roleOf(req, need, address);
    if (ROLE_RANK[role.role] < ROLE_RANK[need]) {
      // Counted, but not against the address: the caller proved who it is, nothing is being guessed.
      this.count("forbidden");
      throw new ApiError(403, "forbidden", `${req.method} ${req.path} needs the ${need} role; ${role.who} has ${role.role}`);
    }
  }

  private roleOf(req: AuthRequest, need: Role, address: string): { role: Role; who: string } {
    const how = this.clientCa ? "a bearer token or a client certificate" : "a bearer token";
    if (req.authorization !== null) {
      const m = BEARER_RE.exec(req.authorization);
      if (!m) {
        this.fail("malformed", address);
        throw unauthorized(`the Authorization header is not "Bearer TOKEN": this API needs ${how} with the ${need} role`, "invalid_request");
      }
      const found = this.opts.tokens().lookup(m[1]!);
      if (found === null) {
        this.fail("unknown_token", address);
        throw unauthorized("the bearer token is not known to this node (revoked, mistyped, or from another cluster): check the token", "invalid_token");
      }
      return { role: found.role, who: `token "${found.name}"` };
    }
    if (req.cert !== null) {
      if (req.cert.role === null) {
        this.fail("cert_without_role", address);
        throw unauthorized(`the client certificate ${JSON.stringify(req.cert.name)} names no role: issue it with a SAN URI cairn:role:read|write|admin (cairn tls client)`);
      }
      return { role: req.cert.role, who: `client certificate ${JSON.stringify(req.cert.name)}` };
    }
    this.fail("missing", address);
    throw unauthorized(`this API needs ${how} with the ${need} role: send Authorization: Bearer TOKEN (cairn init printed one; cairn token add makes more)`);
  }

  private fail(reason: FailureReason, address: string): void {
    this.count(reason);
    this.limiter.fail(address);
  }

  private count(reason: FailureReason): void {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }

  failureCount(reason: FailureReason): number {
    return this.failures.get(reason) ?? 0;
  }

  metricsText(): string {
    const out = [
      "# HELP cairn_auth_failures_total Requests refused by authentication, by reason.",
      "# TYPE cairn_auth_failures_total counter",
    ];
    for (const [r, n] of this.failures) out.push(`cairn_auth_failures_total{reason="${r}"} ${n}`);
    out.push(
      "# HELP cairn_auth_limited_addresses Client addresses with failed authentications in their current window.",
      "# TYPE cairn_auth_limited_addresses gauge",
      `cairn_auth_limited_addresses ${this.limiter.addresses}`,
    );
    return out.join("\n") + "\n";
  }
}

function unauthorized(message: string, error?: string): ApiError {
  return new ApiError(401, "unauthorized", message, {
    headers: { "www-authenticate": error ? `${CHALLENGE}, error="${error}"` : CHALLENGE },
  });
}

/** The role a certificate's SAN URIs name (`cairn:role:R`); null for none or conflicting ones. */
export function roleFromUris(uris: readonly string[]): Role | null {
  let role: Role | null = null;
  for (const u of uris) {
    const m = /^cairn:role:(read|write|admin)$/.exec(u);
    if (!m) continue;
    if (role !== null && role !== m[1]) return null;
    role = m[1] as Role;
  }
  return role;
}

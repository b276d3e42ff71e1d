/**
 * `cairn serve`'s API authentication: which tokens file, --no-auth, the API
 * client CA, and the server that gives the app each request's client
 * address and certificate.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { type ConnInfo, type createApp } from "../api/app.ts";
import { Authenticator } from "../api/auth.ts";
import { clientCertReader } from "../api/clientcert.ts";
import { loadTokensFileSync, type TokensWatch, watchTokensFile } from "../api/tokens-watch.ts";
import { type Conn, type HttpServerHandle, serveHttp } from "../platform/http.ts";
import { serveHttpsWithClientCa } from "../platform/tlsfront.ts";
import type { Logger } from "../util/log.ts";
import { UsageError } from "./args.ts";

export const AUTH_OPTIONS = {
  tokens: { type: "string" },
  "no-auth": { type: "boolean", default: false },
  "api-client-ca": { type: "string" },
} as const;

export const AUTH_USAGE = `API authentication (required unless --no-auth):
  --tokens FILE      the API tokens file (hashes only; hot-reloaded: a revoked
                     token stops working within a second). Default:
                     tokens.json beside the cluster file, if it exists
                     (cairn init writes one; cairn token add|revoke|list)
  --no-auth          serve the API with NO authentication: anyone who reaches
                     the port can read, write and call /admin. Logged as a
                     warning at start and shown in /status ("auth": "none")
  --api-client-ca F  also accept TLS client certificates signed by the CA in
                     PEM file F; the role is the certificate's SAN URI
                     cairn:role:read|write|admin (cairn tls client makes them)
Without --tokens, without tokens.json beside the cluster file and without
--no-auth, serve refuses to start.`;

export interface ServeAuth {
  readonly auth: Authenticator | null;
  readonly clientCa: string | null;
  close(): void;
}

type AuthValues = { tokens?: string; "no-auth"?: boolean; "api-client-ca"?: string };

/** Decides the API's authentication before the node starts; a bad tokens file is a usage error (exit 2). */
export function setupAuth(values: AuthValues, clusterFile: string, log: Logger): ServeAuth {
  const clientCa = values["api-client-ca"] ? readClientCa(values["api-client-ca"]) : null;
  if (values["no-auth"]) {
    if (values.tokens) throw new UsageError("--no-auth and --tokens contradict each other: pass one");
    if (clientCa) throw new UsageError("--no-auth and --api-client-ca contradict each other: pass one");
    log.warn("the API has NO authentication (--no-auth): anyone who reaches it can read, write and call /admin; use only for development");
    return { auth: null, clientCa: null, close() {} };
  }
  const beside = join(dirname(resolve(clusterFile)), "tokens.json");
  const path = values.tokens ?? (existsSync(beside) ? beside : null);
  if (path === null) {
    throw new UsageError(
      `no API tokens: pass --tokens FILE, or put tokens.json beside the cluster file (${beside}; cairn init writes one, ` +
        "cairn token add makes one), or pass --no-auth to serve the API without authentication (development only)",
    );
  }
  const r = loadTokensFileSync(path);
  if (!r.ok) throw new UsageError(`${r.error.message}${r.error.problems.length > 1 ? `\n  ${r.error.problems.join("\n  ")}` : ""}`);
  warnIfWritableByOthers(path, log);
  const watch: TokensWatch = watchTokensFile({ path, initial: r.tokens, logger: log });
  log.info(`API authentication: ${r.tokens.size} tokens from ${resolve(path)}${clientCa ? `, and client certificates signed by ${values["api-client-ca"]}` : ""}`);
  if (r.tokens.size === 0 && !clientCa) log.warn("the tokens file has no tokens: every API call but /health is refused until one is added (cairn token add)");
  return { auth: new Authenticator({ tokens: () => watch.current(), clientCa: clientCa !== null }), clientCa, close: () => watch.close() };
}

/** Whoever can write the tokens file can add an admin token: say so when that is more than its owner. */
function warnIfWritableByOthers(path: string, log: Logger): void {
  try {
    const mode = statSync(path).mode;
    if ((mode & 0o022) !== 0) {
      log.warn(`the tokens file ${resolve(path)} is writable by its group or others (mode ${(mode & 0o777).toString(8)}): anyone who can write it can add an admin token; chmod 600 it`);
    }
  } catch {
    // It was just read; a race with its removal is reported by the watcher.
  }
}

function readClientCa(path: string): string {
  try {
    const pem = readFileSync(path, "utf8");
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in it");
    return pem;
  } catch (e) {
    throw new UsageError(`cannot use --api-client-ca ${path}: ${(e as Error).message}`);
  }
}

/** Serves `app` on host:port, with the client address (and certificate, with a client CA) for authentication. */
export async function listenApi(o: {
  hostname: string;
  port: number;
  app: ReturnType<typeof createApp>;
  tls: { cert: string; key: string } | undefined;
  clientCa: string | null;
}): Promise<HttpServerHandle> {
  const fetch = (req: Request, conn: ConnInfo) => o.app.fetch(req, conn);
  if (o.clientCa !== null && o.tls === undefined) {
    throw new UsageError("--api-client-ca needs an https:// API address (client certificates are a TLS feature) and the cluster file's tls section");
  }
  if (o.clientCa === null || o.tls === undefined) {
    return await serveHttp({ hostname: o.hostname, port: o.port, tls: o.tls, fetch: (req, conn: Conn) => fetch(req, { remoteAddress: conn.remoteAddress }) });
  }
  const read = await clientCertReader();
  return await serveHttpsWithClientCa({
    hostname: o.hostname,
    port: o.port,
    tls: o.tls,
    clientCa: o.clientCa,
    fetch: (req, conn) => fetch(req, { remoteAddress: conn.remoteAddress, cert: read(conn.clientCert) }),
  });
}

/** Tokens over plain http travel in clear: say so (the API URL in the cluster file decides). */
export function warnPlainHttp(apiUrl: string, auth: ServeAuth, log: Logger): void {
  if (auth.auth !== null && apiUrl.startsWith("http:")) {
    log.warn(`the API is plain http (${apiUrl}): bearer tokens cross the network in clear; use an https:// API address and the tls section`);
  }
}

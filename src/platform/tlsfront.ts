/**
 * HTTPS with optional client certificates, for the API client CA.
 *
 * Neither runtime's HTTP server hands the handler the client's certificate:
 * Bun.serve takes `requestCert` and `ca` and verifies the chain, but neither
 * the Request nor the Server (requestIP, ...) exposes the certificate, and
 * Bun's node:https socket has no getPeerCertificate; Deno.serve has no
 * client-certificate option at all (Deno's node:https does give it, Bun's
 * does not). node:tls servers, however, give the verified certificate
 * (getPeerCertificate().raw, DER) in both runtimes. So with a client CA the
 * API's TLS is ended here, in a node:tls server on the API port, and each
 * connection is relayed as plain HTTP to the runtime's own HTTP server on a
 * loopback port; that server learns the client's address and certificate by
 * the relay connection's source port. A request on the loopback port that
 * did not come through the relay is refused (403).
 *
 * Certificates are requested, not required: a client without one (or with
 * one the CA did not sign, or an expired one) still connects and may use a
 * bearer token.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { type Conn, type FetchHandler, type HttpServerHandle, serveHttp } from "./http.ts";

export interface ClientCertConn extends Conn {
  /** The verified client certificate (DER), or null. */
  readonly clientCert: Uint8Array | null;
}

export interface TlsFrontOptions {
  readonly hostname: string;
  readonly port: number;
  readonly tls: { readonly cert: string; readonly key: string };
  /** PEM of the CA whose client certificates are accepted. */
  readonly clientCa: string;
  readonly fetch: (req: Request, conn: ClientCertConn) => Response | Promise<Response>;
  readonly idleTimeoutSec?: number;
  /** Connections at once; more are closed at accept. */
  readonly connectionsMax?: number;
  /** A TLS handshake must finish within this. */
  readonly handshakeMs?: number;
}

const RELAY_HOST = "127.0.0.1";
const CONNECTIONS_MAX_DEFAULT = 4096;
const HANDSHAKE_MS_DEFAULT = 10_000;

interface Origin {
  readonly remoteAddress: string | null;
  readonly remotePort: number | null;
  readonly clientCert: Uint8Array | null;
}

export async function serveHttpsWithClientCa(opts: TlsFrontOptions): Promise<HttpServerHandle & { readonly relayPort: number }> {
  const origins = new Map<number, Origin>();
  const inner = await serveHttp({
    hostname: RELAY_HOST,
    port: 0,
    idleTimeoutSec: opts.idleTimeoutSec,
    fetch: relayed(origins, opts.fetch),
  });
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({
    cert: opts.tls.cert,
    key: opts.tls.key,
    ca: opts.clientCa,
    requestCert: true,
    rejectUnauthorized: false,
    handshakeTimeout: opts.handshakeMs ?? HANDSHAKE_MS_DEFAULT,
  });
  const max = opts.connectionsMax ?? CONNECTIONS_MAX_DEFAULT;
  server.on("connection", (raw: net.Socket) => {
    if (sockets.size >= max) return void raw.destroy();
    sockets.add(raw);
    raw.once("close", () => sockets.delete(raw));
  });
  server.on("tlsClientError", (_e: Error, s: tls.TLSSocket) => s.destroy());
  server.on("secureConnection", (s: tls.TLSSocket) => relay(s, inner.port, origins));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    relayPort: inner.port,
    async close() {
      server.close();
      for (const s of sockets) s.destroy();
      await inner.close();
    },
    // A rotated pair: new handshakes use it, connections under way keep theirs (node:tls in both runtimes).
    async updateTls(next) {
      server.setSecureContext({ cert: next.cert, key: next.key, ca: opts.clientCa });
    },
  };
}

/** The runtime's handler on the loopback port: only relayed connections, with their origin. */
function relayed(origins: Map<number, Origin>, fetch: TlsFrontOptions["fetch"]): FetchHandler {
  return (req, conn) => {
    const o = conn.remoteAddress === RELAY_HOST && conn.remotePort !== null ? origins.get(conn.remotePort) : undefined;
    if (!o) {
      const body = { error: { code: "forbidden", message: "this port only takes connections relayed from the API's TLS port: connect to the API URL" } };
      return new Response(JSON.stringify(body), { status: 403, headers: { "content-type": "application/json" } });
    }
    return fetch(req, { remoteAddress: o.remoteAddress, remotePort: o.remotePort, clientCert: o.clientCert });
  };
}

function relay(s: tls.TLSSocket, innerPort: number, origins: Map<number, Origin>): void {
  const peer = s.authorized ? s.getPeerCertificate() : null;
  const raw = (s as unknown as { _parent?: net.Socket })._parent;
  const origin: Origin = {
    remoteAddress: s.remoteAddress ?? raw?.remoteAddress ?? null,
    remotePort: s.remotePort ?? raw?.remotePort ?? null,
    clientCert: peer?.raw ? new Uint8Array(peer.raw) : null,
  };
  const up = net.connect({ host: RELAY_HOST, port: innerPort, localAddress: RELAY_HOST });
  let localPort: number | null = null;
  const done = () => {
    if (localPort !== null) origins.delete(localPort);
    s.destroy();
    up.destroy();
  };
  up.once("connect", () => {
    localPort = up.localPort ?? null;
    if (localPort === null) return done();
    origins.set(localPort, origin);
    s.pipe(up);
    up.pipe(s);
  });
  up.once("error", done);
  up.once("close", done);
  s.once("error", done);
  s.once("close", done);
}

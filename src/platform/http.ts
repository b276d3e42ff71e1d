/**
 * Serving HTTP, and fetching from a TLS server signed by the cluster CA: the
 * only places where Bun (Bun.serve, fetch's `tls` option) and Deno
 * (Deno.serve, Deno.createHttpClient) differ for the API.
 *
 * Long polls wait up to 60 s with nothing on the wire, so the idle timeout
 * must exceed that: Bun's default (10 s) would cut them. SSE streams send a
 * keepalive comment every 15 s, so they never look idle.
 */

// Declared here so that `deno check` (no Bun types) and `tsc` (no Deno types)
// both accept this file; at run time each is the global or undefined.
declare const Bun: {
  serve(opts: BunServeOptions): BunServer;
} | undefined;
interface BunServer {
  port?: number;
  stop(closeActive?: boolean): Promise<void>;
  requestIP(req: Request): { address: string; port: number } | null;
  reload(opts: { fetch: BunServeOptions["fetch"]; error?: (err: Error) => Response }): void;
}
declare const Deno: {
  serve(
    opts: DenoServeOptions,
    handler: (req: Request, info: { remoteAddr: { hostname?: string; port?: number } }) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void>; finished: Promise<void> };
  createHttpClient(opts: { caCerts: string[] }): { close(): void };
} | undefined;

interface BunServeOptions {
  hostname: string;
  port: number;
  fetch: (req: Request, server: BunServer) => Response | Promise<Response>;
  error?: (err: Error) => Response;
  tls?: { cert: string; key: string };
  idleTimeout?: number;
  reusePort?: boolean;
}

interface DenoServeOptions {
  hostname: string;
  port: number;
  cert?: string;
  key?: string;
  onListen?: (addr: { port: number }) => void;
  onError?: (err: unknown) => Response;
}

/** What the runtime tells of a request's connection. */
export interface Conn {
  /** The client's IP address (Bun: server.requestIP, Deno: info.remoteAddr), or null. */
  readonly remoteAddress: string | null;
  /** The client's source port, or null. */
  readonly remotePort: number | null;
}

export type FetchHandler = (req: Request, conn: Conn) => Response | Promise<Response>;

export interface ServeOptions {
  readonly hostname: string;
  /** 0 picks a free port; the chosen one is in the result. */
  readonly port: number;
  readonly fetch: FetchHandler;
  /** PEM strings; without them the server speaks plain HTTP. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Seconds a connection may sit idle (Bun only: Deno has no such timeout). Capped at Bun's maximum. */
  readonly idleTimeoutSec?: number;
  /** How long close() waits for in-flight responses before it gives up waiting. */
  readonly closeWaitMs?: number;
}

export interface HttpServerHandle {
  readonly port: number;
  /** Stops accepting, ends connections; resolves within closeWaitMs whatever clients do. */
  close(): Promise<void>;
  /**
   * Serves new connections with another certificate and key, same address, no
   * restart (a server started without tls throws). Requests under way finish
   * on the connection they came on. Bun: a second listener on the port
   * (SO_REUSEPORT) starts first, so no connection is refused; the old one
   * answers with "Connection: close" for DRAIN_MS (clients leave its
   * keep-alive connections after their next response: closing them idle
   * would race a client reusing one) and then stops. Deno (reusePort is an unstable API there): the old
   * listener stops accepting and the new one binds right after (~10 ms in
   * which a new connection may be refused; clients retry).
   */
  updateTls(tls: { readonly cert: string; readonly key: string }): Promise<void>;
}

/** Bun.serve refuses idleTimeout above this. */
export const BUN_IDLE_TIMEOUT_SEC_MAX = 255;
/** Above the 60 s long-poll cap, with room for a slow answer. */
export const IDLE_TIMEOUT_SEC_DEFAULT = 120;
const CLOSE_WAIT_MS_DEFAULT = 5000;

/** Last resort for an exception that escaped the handler (the hono app has its own onError). */
function fallbackError(): Response {
  return new Response(JSON.stringify({ error: { code: "internal", message: "internal server error" } }), {
    status: 500,
    headers: { "content-type": "application/json" },
  });
}

export async function serveHttp(opts: ServeOptions): Promise<HttpServerHandle> {
  const idle = Math.min(BUN_IDLE_TIMEOUT_SEC_MAX, Math.max(1, Math.trunc(opts.idleTimeoutSec ?? IDLE_TIMEOUT_SEC_DEFAULT)));
  const closeWaitMs = opts.closeWaitMs ?? CLOSE_WAIT_MS_DEFAULT;
  if (typeof Bun !== "undefined") return serveBun(opts, idle, closeWaitMs);
  if (typeof Deno !== "undefined") return serveDeno(opts, closeWaitMs);
  throw new Error("serveHttp needs Bun or Deno: neither global is present");
}

/** A listener replaced by updateTls still ends its open streams by this bound (above the 60 s long-poll cap). */
const RETIRE_WAIT_MS = 70_000;
/** How long a replaced Bun listener keeps answering (with Connection: close) before it stops accepting. */
const DRAIN_MS = 1000;

/** The handler with "Connection: close" on every answer: the client opens a new connection next time. */
function closingFetch(fetch: FetchHandler): FetchHandler {
  return async (req, conn) => {
    const r = await fetch(req, conn);
    const headers = new Headers(r.headers);
    headers.set("connection", "close");
    return new Response(r.body, { status: r.status, statusText: r.statusText, headers });
  };
}

function noTls(): Promise<void> {
  return Promise.reject(new Error("updateTls on an HTTP server started without TLS: start it with tls"));
}

function serveBun(opts: ServeOptions, idle: number, closeWaitMs: number): HttpServerHandle {
  const start = (port: number, tls: ServeOptions["tls"]) =>
    Bun!.serve({
      hostname: opts.hostname,
      port,
      fetch: (req, srv) => {
        const ip = srv.requestIP(req);
        return opts.fetch(req, { remoteAddress: ip?.address ?? null, remotePort: ip?.port ?? null });
      },
      error: fallbackError,
      idleTimeout: idle,
      // Lets updateTls bind a second listener on this port before the first stops.
      ...(tls ? { tls: { cert: tls.cert, key: tls.key }, reusePort: true } : {}),
    });
  let server = start(opts.port, opts.tls);
  const port = server.port ?? opts.port;
  const retiring = new Set<Promise<void>>();
  return {
    port,
    // stop(true) ends in-flight responses too (open SSE streams, long polls).
    close: () => withinMs(Promise.all([server.stop(true), ...retiring]).then(() => undefined), closeWaitMs),
    updateTls: async (tls) => {
      if (!opts.tls) return noTls();
      const next = start(port, tls);
      const old = server;
      server = next;
      const closing = closingFetch(opts.fetch);
      old.reload({
        fetch: (req, srv) => {
          const ip = srv.requestIP(req);
          return closing(req, { remoteAddress: ip?.address ?? null, remotePort: ip?.port ?? null });
        },
        error: fallbackError,
      });
      // stop(false): stops accepting, closes idle connections, lets requests under way finish; then a bound for streams.
      const done = new Promise((r) => setTimeout(r, DRAIN_MS))
        .then(() => withinMs(old.stop(false), RETIRE_WAIT_MS))
        .then(() => old.stop(true));
      retiring.add(done);
      void done.finally(() => retiring.delete(done));
    },
  };
}

/** Binding right after the old listener closed: retried this often, this far apart. */
const REBIND_TRIES = 200;
const REBIND_GAP_MS = 10;

async function serveDeno(opts: ServeOptions, closeWaitMs: number): Promise<HttpServerHandle> {
  const start = async (port: number, tls: ServeOptions["tls"]) => {
    let listening!: (port: number) => void;
    const ready = new Promise<number>((resolve) => (listening = resolve));
    const server = Deno!.serve(
      {
        hostname: opts.hostname,
        port,
        ...(tls ? { cert: tls.cert, key: tls.key } : {}),
        onListen: (addr) => listening(addr.port),
        onError: fallbackError,
      },
      (req, info) => opts.fetch(req, { remoteAddress: info.remoteAddr.hostname ?? null, remotePort: info.remoteAddr.port ?? null }),
    );
    return { server, port: await ready };
  };
  let { server, port } = await start(opts.port, opts.tls);
  const retiring = new Set<Promise<void>>();
  return {
    port,
    // shutdown() is graceful: it waits for open responses. The API ends its
    // streams when its own signal aborts; this bound covers any that do not.
    close: () => withinMs(Promise.all([server.shutdown(), ...retiring]).then(() => undefined), closeWaitMs),
    updateTls: async (tls) => {
      if (!opts.tls) return noTls();
      const done = withinMs(server.shutdown(), RETIRE_WAIT_MS);
      retiring.add(done);
      void done.finally(() => retiring.delete(done));
      server = (await rebind(() => start(port, tls))).server;
    },
  };
}

async function rebind<T>(bind: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await bind();
    } catch (e) {
      if (i >= REBIND_TRIES) throw new Error(`cannot listen again after replacing the TLS certificate: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, REBIND_GAP_MS));
    }
  }
}

function withinMs(p: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([p.catch(() => undefined), limit]).finally(() => clearTimeout(timer));
}

export type HttpFetch = ((input: string | URL | Request, init?: RequestInit) => Promise<Response>) & {
  /** Releases the TLS client (Deno); a no-op otherwise. */
  close(): void;
};

/**
 * A fetch that trusts `ca` (PEM) in addition to the system roots, for the
 * CLI talking to an https API whose certificate the cluster CA signed.
 * Without `ca` it is the global fetch.
 */
export function httpClient(opts: { ca?: string } = {}): HttpFetch {
  const ca = opts.ca;
  if (ca === undefined) return Object.assign((input: string | URL | Request, init?: RequestInit) => fetch(input, init), { close() {} });
  if (typeof Bun !== "undefined") {
    const f = (input: string | URL | Request, init?: RequestInit) => fetch(input, { ...init, tls: { ca } } as RequestInit);
    return Object.assign(f, { close() {} });
  }
  if (typeof Deno !== "undefined") {
    const client = Deno.createHttpClient({ caCerts: [ca] });
    const f = (input: string | URL | Request, init?: RequestInit) => fetch(input, { ...init, client } as RequestInit);
    return Object.assign(f, { close: () => client.close() });
  }
  throw new Error("httpClient needs Bun or Deno: neither global is present");
}

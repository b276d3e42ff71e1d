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
interface BunServer {
  port?: number;
  stop(closeActive?: boolean): Promise<void>;
  requestIP(req: Request): { address: string; port: number } | null;
}
declare const Bun: {
  serve(opts: BunServeOptions): BunServer;
} | undefined;
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
  if (typeof Bun !== "undefined") {
    const server = Bun.serve({
      hostname: opts.hostname,
      port: opts.port,
      fetch: (req, srv) => {
        const ip = srv.requestIP(req);
        return opts.fetch(req, { remoteAddress: ip?.address ?? null, remotePort: ip?.port ?? null });
      },
      error: fallbackError,
      idleTimeout: idle,
      ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    });
    const port = server.port ?? opts.port;
    // stop(true) ends in-flight responses too (open SSE streams, long polls).
    return { port, close: () => withinMs(server.stop(true), closeWaitMs) };
  }
  if (typeof Deno !== "undefined") return serveDeno(opts, closeWaitMs);
  throw new Error("serveHttp needs Bun or Deno: neither global is present");
}

async function serveDeno(opts: ServeOptions, closeWaitMs: number): Promise<HttpServerHandle> {
  const deno = Deno!;
  let listening!: (port: number) => void;
  const ready = new Promise<number>((resolve) => (listening = resolve));
  const server = deno.serve(
    {
      hostname: opts.hostname,
      port: opts.port,
      ...(opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
      onListen: (addr) => listening(addr.port),
      onError: fallbackError,
    },
    (req, info) => opts.fetch(req, { remoteAddress: info.remoteAddr.hostname ?? null, remotePort: info.remoteAddr.port ?? null }),
  );
  const port = await ready;
  // shutdown() is graceful: it waits for open responses. The API ends its
  // streams when its own signal aborts; this bound covers any that do not.
  return { port, close: () => withinMs(server.shutdown(), closeWaitMs) };
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

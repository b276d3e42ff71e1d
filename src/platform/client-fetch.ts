/**
 * A fetch that trusts a CA (PEM) besides the system roots, for the client
 * library on Bun, Deno and Node 20+. Bun and Deno take the CA on their own
 * fetch (src/platform/http.ts). Node's global fetch takes a CA only through an
 * undici dispatcher, and undici is not importable without the package, so
 * under Node the request goes through node:https with an Agent holding `ca`
 * and the answer is turned into a web Response (streamed, abortable).
 */
import { httpClient, type HttpFetch } from "./http.ts";

declare const Bun: unknown;
declare const Deno: unknown;

export type { HttpFetch };

export function caFetch(opts: { ca?: string } = {}): HttpFetch {
  if (opts.ca === undefined || typeof Bun !== "undefined" || typeof Deno !== "undefined") return httpClient(opts);
  return nodeFetch(opts.ca);
}

function nodeFetch(ca: string): HttpFetch {
  // Loaded lazily: Bun and Deno never reach here.
  const mods = Promise.all([import("node:https"), import("node:http"), import("node:stream")]);
  let agent: import("node:https").Agent | undefined;
  const f = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const [https, http, stream] = await mods;
    agent ??= new https.Agent({ ca, keepAlive: true });
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const body = init.body === undefined || init.body === null ? undefined : new Uint8Array(await new Response(init.body).arrayBuffer());
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    if (body !== undefined) headers["content-length"] = String(body.byteLength);
    const lib = url.protocol === "https:" ? https : http;
    return await new Promise<Response>((resolve, reject) => {
      const req = lib.request(url, { method: init.method ?? "GET", headers, ...(url.protocol === "https:" ? { agent } : {}), ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(", ") : v);
        const status = res.statusCode ?? 500;
        const nobody = status === 204 || status === 304 || (init.method ?? "GET") === "HEAD";
        if (nobody) res.resume();
        const web = nobody ? null : (stream.Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
        resolve(new Response(web, { status, statusText: res.statusMessage ?? "", headers: h }));
      });
      req.on("error", reject);
      req.end(body);
    });
  };
  return Object.assign(f, { close: () => agent?.destroy() });
}

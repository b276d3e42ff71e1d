/**
 * Run by serve.test.ts under Deno: serves the API app (over a stub node that
 * answers /health and /status) with serveHttp on an HTTPS port 0, fetches it
 * through httpClient({ca}), and prints one JSON line with what it saw.
 * Arguments: a JSON file {cert, key, ca}.
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { createApp } from "../../src/api/app.ts";
import type { NodeApi } from "../../src/node/api.ts";
import { httpClient, serveHttp } from "../../src/platform/http.ts";
import { Logger } from "../../src/util/log.ts";

const path = process.argv[process.argv.length - 1]!;
const tls = JSON.parse(readFileSync(path, "utf8")) as { cert: string; key: string; ca: string };
const stub = { id: "d1", status: () => ({ id: "d1", role: "follower" }) } as unknown as NodeApi;
const app = createApp({ node: stub, logger: new Logger({ level: "error" }), version: "deno-test" });
const server = await serveHttp({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, tls: { cert: tls.cert, key: tls.key } });
const client = httpClient({ ca: tls.ca });
const out: Record<string, unknown> = { runtime: typeof (globalThis as { Deno?: unknown }).Deno !== "undefined" ? "deno" : "bun", port: server.port };
try {
  const health = await client(`https://127.0.0.1:${server.port}/health`);
  out.health = { status: health.status, body: await health.json() };
  const missing = await client(`https://127.0.0.1:${server.port}/nope`);
  out.missing = { status: missing.status, body: await missing.json() };
  try {
    const untrusted = await fetch(`https://127.0.0.1:${server.port}/health`);
    out.untrusted = untrusted.status;
    await untrusted.body?.cancel();
  } catch {
    out.untrusted = "refused";
  }
} finally {
  client.close();
  await server.close();
}
console.log(JSON.stringify(out));

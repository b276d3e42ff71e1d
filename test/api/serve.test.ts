import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createApp, LIMITS_DEFAULT } from "../../src/api/app.ts";
import { httpClient, IDLE_TIMEOUT_SEC_DEFAULT, serveHttp, type HttpServerHandle } from "../../src/platform/http.ts";
import { createCa, createNodeCert, type CertAndKey } from "../../src/transport/certs.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { waitFor } from "../helpers/ports.ts";
import { jsonInit, metricValue, parseSse, readSseUntil, singleNode, type ApiHarness } from "./helpers.ts";

const REPO = resolve(import.meta.dir, "../..");
const DENO = join(REPO, "node_modules/.bin/deno");

let h: ApiHarness;
let ca: CertAndKey;
let cert: CertAndKey;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  h = await singleNode();
  ca = await createCa({ commonName: "cairn api test CA", days: 2 });
  cert = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1", "localhost"], days: 1 });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await h.close();
});

async function serve(opts: { tls?: boolean; signal?: AbortSignal; idleTimeoutSec?: number; sseKeepaliveMs?: number } = {}): Promise<HttpServerHandle & { url: string }> {
  const app = createApp({
    node: h.node,
    logger: memoryLogger().log,
    version: "t",
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.sseKeepaliveMs ? { limits: { sseKeepaliveMs: opts.sseKeepaliveMs } } : {}),
  });
  const idle = opts.idleTimeoutSec === undefined ? {} : { idleTimeoutSec: opts.idleTimeoutSec };
  const server = await serveHttp({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, ...idle, ...(opts.tls ? { tls: cert } : {}) });
  cleanups.push(() => server.close());
  return { ...server, url: `${opts.tls ? "https" : "http"}://127.0.0.1:${server.port}` };
}

async function waiting(url: string, f: typeof fetch = fetch): Promise<number | undefined> {
  return metricValue(await (await f(`${url}/metrics`)).text(), "cairn_http_waiting");
}

describe("serveHttp", () => {
  test("serves the app on a free port chosen at run time", async () => {
    const s = await serve();
    expect(s.port).toBeGreaterThan(0);
    const w = await fetch(`${s.url}/changes`, jsonInit("POST", { data: "over a socket" }));
    expect(w.status).toBe(201);
    const { index } = (await w.json()) as { index: number };
    const r = await fetch(`${s.url}/changes/${index}`);
    expect(((await r.json()) as { data: string }).data).toBe("over a socket");
    const big = await fetch(`${s.url}/changes`, jsonInit("POST", { data: "x".repeat(5 * 1024 * 1024) }));
    expect(big.status).toBe(413);
  });

  test("serves HTTPS with a certificate from the cluster CA; httpClient({ca}) trusts it, plain fetch does not", async () => {
    const s = await serve({ tls: true });
    const client = httpClient({ ca: ca.cert });
    const res = await client(`${s.url}/health`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { ok: boolean }).ok).toBe(true);
    const put = await client(`${s.url}/kv/tls-key`, { method: "PUT", body: "secure", headers: { "content-type": "text/plain" } });
    expect(put.status).toBe(200);
    expect(await (await client(`${s.url}/kv/tls-key`)).text()).toBe("secure");
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
    const otherCa = await createCa({ commonName: "another CA", days: 1 });
    await expect(httpClient({ ca: otherCa.cert })(`${s.url}/health`)).rejects.toThrow();
    client.close();
  });

  test("a long poll outlives Bun's 10 s idle timeout; keepalives hold a stream open past a short idle timeout", async () => {
    expect(IDLE_TIMEOUT_SEC_DEFAULT).toBeGreaterThan(LIMITS_DEFAULT.blockSecMax);
    const s = await serve();
    const short = await serve({ idleTimeoutSec: 8, sseKeepaliveMs: 2000 });
    const since = h.node.fsm.feedState().last;
    const start = Date.now();
    const stream = (async () => {
      const reader = (await fetch(`${short.url}/changes/stream?since=${since}&tag=idle`)).body!.getReader();
      const text = await readSseUntil(reader, () => Date.now() - start > 10_500, 12_000);
      await reader.cancel();
      return text;
    })();
    const res = await fetch(`${s.url}/changes?since=${since}&block=11`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { changes: unknown[] }).changes).toEqual([]);
    expect(Date.now() - start).toBeGreaterThanOrEqual(10_900);
    expect((await stream).split(": keepalive").length).toBeGreaterThanOrEqual(4);
  }, 30_000);

  test("an SSE stream over a socket delivers changes; a client that disconnects frees its slot", async () => {
    const s = await serve();
    const since = h.node.fsm.feedState().last;
    const ctl = new AbortController();
    const res = await fetch(`${s.url}/changes/stream?since=${since}&tag=sock`, { signal: ctl.signal });
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    const reader = res.body!.getReader();
    await fetch(`${s.url}/changes`, jsonInit("POST", { data: "live", tags: ["sock"] }));
    const events = parseSse(await readSseUntil(reader, (t) => parseSse(t).length >= 1));
    expect(JSON.parse(events[0]!.data).data).toBe("live");
    expect(events[0]!.id).toBe(String(since + 1));
    expect(await waiting(s.url)).toBe(1);
    ctl.abort();
    await waitFor("the server notices the disconnect", async () => (await waiting(s.url)) === 0, 5000);
  });

  test("close() ends open streams and long polls promptly", async () => {
    const shutdown = new AbortController();
    const s = await serve({ signal: shutdown.signal });
    const res = await fetch(`${s.url}/changes/stream?since=${h.node.fsm.feedState().last}`);
    const reader = res.body!.getReader();
    await readSseUntil(reader, (t) => t.includes("retry:"));
    const poll = fetch(`${s.url}/changes?since=${h.node.fsm.feedState().last}&block=30`).then((r) => r.status, () => "cut");
    await waitFor("both wait", async () => (await waiting(s.url)) === 2);
    const start = Date.now();
    shutdown.abort();
    await s.close();
    expect(Date.now() - start).toBeLessThan(3000);
    expect(["cut", 200]).toContain(await poll);
  });
});

describe("serveHttp updateTls", () => {
  test("new connections get the new certificate and no request fails across the swap", async () => {
    const server = await serve({ tls: true });
    const next = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1"], days: 1 });
    const served = () =>
      new Promise<string>((res, rej) => {
        const s = tlsConnect({ host: "127.0.0.1", port: server.port, ca: ca.cert, checkServerIdentity: () => undefined }, () => {
          res(s.getPeerCertificate().serialNumber);
          s.destroy();
        });
        s.once("error", rej);
      });
    const serialOf = (pem: string) => new X509Certificate(pem).serialNumber;
    expect(await served()).toBe(serialOf(cert.cert));
    const f = httpClient({ ca: ca.cert });
    cleanups.push(async () => f.close());
    let stop = false;
    const errors: string[] = [];
    let ok = 0;
    const loops = Array.from({ length: 3 }, async () => {
      while (!stop) {
        const r = await f(`${server.url}/health`).catch((e: Error) => (errors.push(e.message), null));
        if (r?.status === 200) ok++;
        await r?.text();
      }
    });
    await waitFor("some requests", () => ok > 20);
    await server.updateTls(next);
    await waitFor("the new certificate served", async () => (await served()) === serialOf(next.cert));
    const before = ok;
    await waitFor("requests after the swap", () => ok > before + 20);
    stop = true;
    await Promise.all(loops);
    expect(errors).toEqual([]);
  });

  test("a plain HTTP server refuses updateTls", async () => {
    const server = await serve();
    await expect(server.updateTls(cert)).rejects.toThrow(/without TLS/);
  });
});

describe("under Deno", () => {
  test("serveHttp and httpClient({ca}) serve and fetch the app over HTTPS", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cairn-api-deno-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, "tls.json");
    await writeFile(file, JSON.stringify({ cert: cert.cert, key: cert.key, ca: ca.cert }));
    const child = Bun.spawn([DENO, "run", "-A", join(REPO, "test/api/deno-serve.ts"), file], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    cleanups.push(async () => {
      child.kill();
      await child.exited;
    });
    const timer = setTimeout(() => child.kill(), 60_000);
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    clearTimeout(timer);
    expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
    const r = JSON.parse(out.trim().split("\n").pop()!) as Record<string, { status: number; body: unknown }> & { runtime: string; untrusted: unknown };
    expect(r.runtime).toBe("deno");
    expect(r.health).toEqual({ status: 200, body: { ok: true, id: "d1", version: "deno-test" } });
    expect(r.missing?.status).toBe(404);
    expect(r.untrusted).toBe("refused");
  }, 90_000);
});

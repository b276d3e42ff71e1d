/**
 * The API with a client CA, over real TLS on loopback: the node:tls front
 * verifies client certificates, and the app sees each request's role and
 * address (serve's own listenApi, as `cairn serve --api-client-ca` runs it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createApp } from "../../src/api/app.ts";
import { listenApi } from "../../src/cli/serve-auth.ts";
import type { HttpServerHandle } from "../../src/platform/http.ts";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";
import { createClientCert } from "../../src/transport/clientcerts.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { authWith, singleNode, type ApiHarness } from "../api/helpers.ts";

let h: ApiHarness;
let server: HttpServerHandle;
let ca: { cert: string; key: string };
let other: { cert: string; key: string };
const url = (p: string) => `https://127.0.0.1:${server.port}${p}`;

beforeAll(async () => {
  h = await singleNode();
  ca = await createCa({ commonName: "test CA", days: 1 });
  other = await createCa({ commonName: "another CA", days: 1 });
  const node = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1"], days: 1 });
  const app = createApp({ node: h.node, logger: memoryLogger().log, version: "t", auth: authWith({ admin: ["root"] }, { clientCa: true }) });
  server = await listenApi({ hostname: "127.0.0.1", port: 0, app, tls: { cert: node.cert, key: node.key }, clientCa: ca.cert });
});

afterAll(async () => {
  await server?.close();
  await h?.close();
});

async function call(path: string, init: RequestInit & { cert?: { cert: string; key: string } } = {}): Promise<Response> {
  const tls = { ca: ca.cert, ...(init.cert ? { cert: init.cert.cert, key: init.cert.key } : {}) };
  return await fetch(url(path), { ...init, tls } as RequestInit);
}

test("a client certificate with cairn:role:write writes but gets 403 on /admin; read can read only", async () => {
  const writer = await createClientCert({ ca, name: "app1", role: "write", days: 1 });
  const put = await call("/kv/tls", { method: "PUT", body: "v", cert: writer });
  expect(put.status).toBe(200);
  expect(await (await call("/kv/tls", { cert: writer })).text()).toBe("v");
  const adm = await call("/admin/leader", { method: "POST", cert: writer });
  expect(adm.status).toBe(403);
  const reader = await createClientCert({ ca, name: "dash", role: "read", days: 1 });
  expect((await call("/kv/tls", { cert: reader })).status).toBe(200);
  expect((await call("/kv/tls", { method: "PUT", body: "w", cert: reader })).status).toBe(403);
  const admin = await createClientCert({ ca, name: "ops", role: "admin", days: 1 });
  expect((await call("/admin/leader", { method: "POST", body: "{}", headers: { "content-type": "application/json" }, cert: admin })).status).not.toBe(403);
});

test("no certificate and no token: 401; a token alone still works; a certificate of another CA counts as none", async () => {
  expect((await call("/status")).status).toBe(401);
  expect((await call("/status", { headers: { authorization: "Bearer root" } })).status).toBe(200);
  const stranger = await createClientCert({ ca: other, name: "evil", role: "admin", days: 1 });
  const r = await call("/status", { cert: stranger });
  expect(r.status).toBe(401);
  expect((await call("/health")).status).toBe(200);
});

test("a node certificate (no role in it) signed by the same CA is refused", async () => {
  const n2 = await createNodeCert({ ca, nodeId: "n2", hosts: ["127.0.0.1"], days: 1 });
  const r = await call("/status", { cert: n2 });
  expect(r.status).toBe(401);
  expect(((await r.json()) as { error: { message: string } }).error.message).toContain("names no role");
});

test("the loopback relay port refuses requests that did not come through the TLS front", async () => {
  const relayPort = (server as { relayPort?: number }).relayPort;
  expect(relayPort).toBeGreaterThan(0);
  const r = await fetch(`http://127.0.0.1:${relayPort}/status`, { headers: { authorization: "Bearer root" } });
  expect(r.status).toBe(403);
});

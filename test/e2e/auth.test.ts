/**
 * API authentication on real processes of the built binary: what `cairn
 * init` makes, what `serve` refuses at start, the hot reload of the tokens
 * file (revocation within a second, a bad file ignored), --no-auth, and
 * client certificates through `cairn tls client` and --api-client-ca.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, runCairn } from "./harness.ts";

let c: E2ECluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const cairn = (args: string[], env: NodeJS.ProcessEnv = process.env) => runCairn(args, { env });

const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

async function ready(cl: E2ECluster, id = "n1"): Promise<void> {
  await waitFor(`${id} ready`, async () => (await cl.get(id, "/ready").catch(() => null))?.ok, 30_000, 50);
}

test("cairn init writes tokens.json with one hashed admin token and prints the token once; the node takes it", async () => {
  c = await E2ECluster.init(1);
  const file = readFileSync(join(c.dir, "tokens.json"), "utf8");
  const parsed = JSON.parse(file) as { tokens: { name: string; role: string; sha256: string }[] };
  expect(parsed.tokens.map((t) => [t.name, t.role])).toEqual([["admin", "admin"]]);
  expect(parsed.tokens[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
  expect(file).not.toContain(c.token);
  c.start("n1");
  await ready(c);
  expect((await c.json("n1", "/status", bearer("cairn_wrong"))).status).toBe(401);
  const st = await c.status("n1");
  expect(st.auth).toBe("tokens");
  // The CLI without a token: 401 with what to do.
  const { CAIRN_TOKEN: _, ...noToken } = process.env;
  const r = await cairn(["status", "--config", c.file], noToken);
  expect(r.code).toBe(1);
  expect(r.err).toContain("HTTP 401");
  expect(r.err).toContain("pass --token TOKEN or set CAIRN_TOKEN");
  expect((await cairn(["status", "--config", c.file], c.env())).code).toBe(0);
}, 60_000);

test('a malformed tokens file ({"admin": "s3cret"}) is refused at start with exit 2, naming the file and the place', async () => {
  c = await E2ECluster.init(1);
  const bad = join(c.dir, "tokens.json");
  writeFileSync(bad, '{"admin": "s3cret"}');
  c.start("n1");
  expect(await c.exitOf("n1")).toBe(2);
  const out = c.lastRunLogs("n1").join("\n");
  expect(out).toContain(`tokens file ${bad}`);
  expect(out).toContain('unknown key "admin"');
  expect(out).not.toContain("s3cret");
}, 60_000);

test("serve without a tokens file and without --no-auth refuses to start; --no-auth warns and shows in /status", async () => {
  c = await E2ECluster.init(1);
  renameSync(join(c.dir, "tokens.json"), join(c.dir, "tokens.json.away"));
  c.start("n1", { args: ["--no-auth"] });
  await ready(c);
  await c.stop("n1");
  expect(c.lastRunLogs("n1").some((l) => l.includes('"level":"warn"') && l.includes("NO authentication (--no-auth)"))).toBe(true);

  // Without --no-auth and with no tokens.json beside the cluster file: refused.
  const r = await cairn(["serve", "--config", c.file, "--id", "n1", "--data", c.dataDir("n1")]);
  expect(r.code).toBe(2);
  expect(r.err).toContain("no API tokens");
  expect(r.err).toContain("--no-auth");

  c.start("n1", { args: ["--no-auth"] });
  await ready(c);
  const st = (await c.json("n1", "/status", { headers: { authorization: "" } })).body;
  expect(st.auth).toBe("none");
  expect(st.problems.some((p: string) => p.includes("no authentication"))).toBe(true);
  c.token = "";
  expect((await c.json("n1", "/kv/open", { method: "PUT", body: "x" })).status).toBe(200);
}, 60_000);

test("on a running node: a token added works, a revoked one stops within 1 s; a bad file on reload is ignored with a warning", async () => {
  c = await E2ECluster.init(1);
  const tokens = join(c.dir, "tokens.json");
  c.start("n1");
  await ready(c);
  const add = await cairn(["token", "add", "--tokens", tokens, "--name", "app", "--role", "write"]);
  expect(add.code).toBe(0);
  const app = /: (cairn_\S+)$/m.exec(add.out)?.[1];
  expect(app).toBeDefined();
  expect(readFileSync(tokens, "utf8")).not.toContain(app!);
  await waitFor("the new token to work", async () => (await c!.json("n1", "/kv/a", { method: "PUT", body: "1", ...bearer(app!) })).status === 200, 5000, 20);
  expect((await c.json("n1", "/admin/leader", { method: "POST", ...bearer(app!) })).status).toBe(403);
  const list = await cairn(["token", "list", "--tokens", tokens]);
  expect(list.out).toBe("admin\tadmin\napp\twrite\n");

  const revoke = await cairn(["token", "revoke", "--tokens", tokens, "--name", "app"]);
  expect(revoke.code).toBe(0);
  const revokedAt = performance.now();
  await waitFor("the revoked token to be refused", async () => (await c!.json("n1", "/kv/a", bearer(app!))).status === 401, 3000, 10);
  const ms = performance.now() - revokedAt;
  console.log(`revoked token refused ${Math.round(ms)} ms after cairn token revoke exited`);
  expect(ms).toBeLessThan(1000);

  // A malformed file on reload: a warning with the place, the last good tokens stay.
  const good = readFileSync(tokens, "utf8");
  writeFileSync(tokens, '{"tokens": [{"name": "x", "role": "root", "sha256": "00"}]}');
  const warn = await c.waitLog("n1", /tokens file .* ignored, the last good tokens stay in force/);
  expect(String(warn.msg)).toContain("tokens[0].role");
  expect(warn.level).toBe("warn");
  expect((await c.json("n1", "/status")).status).toBe(200);
  writeFileSync(tokens, good);
  await c.waitLog("n1", "tokens file reloaded");
  expect((await c.json("n1", "/status")).status).toBe(200);
}, 60_000);

test("client certificates from cairn tls client, with --api-client-ca: write can write, not admin; none and no token get 401", async () => {
  c = await E2ECluster.init(1);
  const caDir = existsSync(join(c.dir, "ca", "ca.key")) ? join(c.dir, "ca") : join(c.dir, "tls");
  const out = join(c.dir, "clients");
  const made = await cairn(["tls", "client", "--ca", caDir, "--name", "app1", "--role", "write", "--out", out]);
  expect(made.code).toBe(0);
  c.start("n1", { args: ["--api-client-ca", join(caDir, "ca.pem")] });
  await ready(c);
  const ca = readFileSync(join(caDir, "ca.pem"), "utf8");
  const cert = { cert: readFileSync(join(out, "app1.pem"), "utf8"), key: readFileSync(join(out, "app1.key"), "utf8") };
  const call = (path: string, init: RequestInit, withCert: boolean) =>
    fetch(`${c!.api("n1")}${path}`, { ...init, tls: { ca, ...(withCert ? cert : {}) } } as RequestInit);
  expect((await call("/kv/c", { method: "PUT", body: "v" }, true)).status).toBe(200);
  expect((await call("/admin/leader", { method: "POST" }, true)).status).toBe(403);
  expect((await call("/kv/c", {}, false)).status).toBe(401);
  expect((await call("/kv/c", bearer(c.token), false)).status).toBe(200);
  expect((await c.status("n1")).auth).toBe("tokens+client-certificates");
}, 60_000);

test("under Deno too: the node started from the sources takes client certificates and tokens, and refuses neither", async () => {
  c = await E2ECluster.init(1);
  const caDir = existsSync(join(c.dir, "ca", "ca.key")) ? join(c.dir, "ca") : join(c.dir, "tls");
  const out = join(c.dir, "clients");
  expect((await cairn(["tls", "client", "--ca", caDir, "--name", "app2", "--role", "read", "--out", out])).code).toBe(0);
  c.start("n1", { runtime: "deno", args: ["--api-client-ca", join(caDir, "ca.pem")] });
  await waitFor("n1 (deno) ready", async () => (await c!.get("n1", "/ready").catch(() => null))?.ok, 60_000, 100);
  const ca = readFileSync(join(caDir, "ca.pem"), "utf8");
  const cert = { cert: readFileSync(join(out, "app2.pem"), "utf8"), key: readFileSync(join(out, "app2.key"), "utf8") };
  const call = (path: string, init: RequestInit, withCert: boolean) =>
    fetch(`${c!.api("n1")}${path}`, { ...init, tls: { ca, ...(withCert ? cert : {}) } } as RequestInit);
  expect((await call("/kv/d", {}, true)).status).toBe(404);
  expect((await call("/kv/d", { method: "PUT", body: "v" }, true)).status).toBe(403);
  expect((await call("/kv/d", {}, false)).status).toBe(401);
  expect((await call("/kv/d", { method: "PUT", body: "v", ...bearer(c.token) }, false)).status).toBe(200);
}, 90_000);

test("failed authentications from one address: counted in /metrics, 429 with Retry-After past 20 in 10 s; help serve says how auth works", async () => {
  c = await E2ECluster.init(1);
  c.start("n1");
  await ready(c);
  for (let i = 0; i < 20; i++) expect((await c.get("n1", "/status", bearer(`cairn_guess${i}`))).status).toBe(401);
  const limited = await c.get("n1", "/status");
  expect(limited.status).toBe(429);
  expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
  const metrics = await waitFor("the window to end", async () => {
    const r = await c!.get("n1", "/metrics");
    return r.status === 200 ? await r.text() : undefined;
  }, 15_000, 250);
  expect(metrics).toContain('cairn_auth_failures_total{reason="unknown_token"} 20');
  expect(metrics).toMatch(/cairn_auth_failures_total\{reason="rate_limited"\} [1-9]/);
  const help = await cairn(["help", "serve"]);
  expect(help.out).toContain("--no-auth");
  expect(help.out).toContain("tokens.json beside the cluster file");
}, 60_000);

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Authenticator } from "../../src/api/auth.ts";
import { FailureLimiter } from "../../src/api/authlimit.ts";
import { authWith, bodyOf, jsonInit, singleNode, tokenSet, type ApiHarness } from "./helpers.ts";

let h: ApiHarness;
beforeAll(async () => {
  h = await singleNode();
});
afterAll(async () => {
  await h.close();
});

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const from = (address: string, cert: { role: "read" | "write" | "admin" | null; name: string } | null = null) => ({ remoteAddress: address, cert });

describe("client certificates", () => {
  test("a certificate with cairn:role:write can write but not call /admin; one without a role and no credentials at all get 401", async () => {
    const app = h.appWith({ auth: authWith({ admin: ["root"] }, { clientCa: true }) });
    const writer = from("192.0.2.10", { role: "write", name: "app1" });
    expect((await app.request("/kv/c", { method: "PUT", body: "v" }, writer)).status).toBe(200);
    expect((await app.request("/kv/c", {}, writer)).status).toBe(200);
    const adm = await app.request("/admin/leader", { method: "POST" }, writer);
    expect(adm.status).toBe(403);
    expect((await bodyOf(adm)).error.message).toContain('client certificate "app1" has write');
    const none = await app.request("/kv/c", {}, from("192.0.2.11"));
    expect(none.status).toBe(401);
    expect((await bodyOf(none)).error.message).toContain("a bearer token or a client certificate");
    const roleless = await app.request("/kv/c", {}, from("192.0.2.12", { role: null, name: "n1" }));
    expect(roleless.status).toBe(401);
    expect((await bodyOf(roleless)).error.message).toContain("names no role");
    // A token, when sent, decides: a wrong one is not rescued by a certificate.
    expect((await app.request("/kv/c", { headers: bearer("nope") }, writer)).status).toBe(401);
    expect((await app.request("/admin/leader", jsonInit("POST", { to: "zz" }, bearer("root")), writer)).status).not.toBe(403);
  });
});

describe("failed authentications", () => {
  test("are counted by reason in /metrics", async () => {
    const app = h.appWith({ auth: authWith({ admin: ["root"], read: ["reader"] }) });
    await app.request("/status", {}, from("198.51.100.1"));
    await app.request("/status", { headers: bearer("wrong") }, from("198.51.100.1"));
    await app.request("/status", { headers: { authorization: "Basic eDp5" } }, from("198.51.100.1"));
    await app.request("/changes", jsonInit("POST", { data: 1 }, bearer("reader")), from("198.51.100.1"));
    const text = await (await app.request("/metrics", { headers: bearer("root") }, from("198.51.100.2"))).text();
    expect(text).toContain('cairn_auth_failures_total{reason="missing"} 1');
    expect(text).toContain('cairn_auth_failures_total{reason="unknown_token"} 1');
    expect(text).toContain('cairn_auth_failures_total{reason="malformed"} 1');
    expect(text).toContain('cairn_auth_failures_total{reason="forbidden"} 1');
    expect(text).toContain('cairn_auth_failures_total{reason="rate_limited"} 0');
  });

  test("more than 20 in 10 s from one address get 429 with Retry-After, even with a good token; other addresses are not affected", async () => {
    const auth = authWith({ admin: ["root"] });
    const app = h.appWith({ auth });
    for (let i = 0; i < 20; i++) expect((await app.request("/status", { headers: bearer(`guess${i}`) }, from("203.0.113.7"))).status).toBe(401);
    const limited = await app.request("/status", { headers: bearer("root") }, from("203.0.113.7"));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers.get("retry-after"))).toBeLessThanOrEqual(10);
    expect((await bodyOf(limited)).error.code).toBe("too_many_failures");
    expect((await app.request("/status", { headers: bearer("root") }, from("203.0.113.8"))).status).toBe(200);
    expect((await app.request("/health", {}, from("203.0.113.7"))).status).toBe(200);
    expect(auth.failureCount("rate_limited")).toBe(1);
  });

  test("the window ends after 10 s, and the table of addresses is bounded", () => {
    let now = 0;
    const limiter = new FailureLimiter({ failuresMax: 3, windowMs: 10_000, addressesMax: 100 }, () => now);
    for (let i = 0; i < 3; i++) limiter.fail("a");
    expect(limiter.blockedSec("a")).toBe(10);
    now = 9_001;
    expect(limiter.blockedSec("a")).toBe(1);
    now = 10_000;
    expect(limiter.blockedSec("a")).toBe(0);
    for (let i = 0; i < 10_000; i++) limiter.fail(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.addresses).toBe(100);
  });

  test("a request without a client address is limited under one shared key, never let through", () => {
    const auth = new Authenticator({ tokens: () => tokenSet({}), limiter: new FailureLimiter({ failuresMax: 1, windowMs: 10_000, addressesMax: 10 }) });
    const req = { method: "GET", path: "/status", authorization: null, clientAddress: null, cert: null };
    expect(() => auth.check(req)).toThrow();
    try {
      auth.check(req);
    } catch (e) {
      expect((e as { status: number }).status).toBe(429);
    }
  });
});

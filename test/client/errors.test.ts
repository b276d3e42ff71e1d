/** The client's pure parts: answers mapped to typed errors, and how nodes and the CA are found. */
import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BadRequestError,
  ConflictError,
  errorOf,
  GoneError,
  NotFoundError,
  RateLimitedError,
  ServerError,
  UnauthorizedError,
  UnavailableError,
} from "../../src/client/errors.ts";
import { resolveNodes } from "../../src/client/transport.ts";

const body = (code: string, extra: Record<string, unknown> = {}) => ({ error: { code, message: `m ${code}` }, ...extra });

test("each error status becomes its typed error, with code, message and the body's details", () => {
  expect(errorOf(400, body("bad_request"), null, "w")).toBeInstanceOf(BadRequestError);
  expect(errorOf(413, body("too_large"), null, "w")).toBeInstanceOf(BadRequestError);
  expect(errorOf(401, body("unauthorized"), null, "w")).toBeInstanceOf(UnauthorizedError);
  expect(errorOf(403, body("forbidden"), null, "w")).toBeInstanceOf(UnauthorizedError);
  expect(errorOf(404, body("not_found"), null, "w")).toBeInstanceOf(NotFoundError);
  const c = errorOf(412, body("compare_failed", { key: "k", version: 7 }), null, "PUT /kv/k");
  expect(c).toBeInstanceOf(ConflictError);
  expect((c as ConflictError).version).toBe(7);
  expect(c.message).toBe("PUT /kv/k: 412 m compare_failed");
  expect(errorOf(409, body("conflict"), null, "w")).toBeInstanceOf(ConflictError);
  const g = errorOf(410, body("gone", { checkpoint: { id: "c1", index: 40 }, resumeFrom: 40, first: 50 }), null, "w") as GoneError;
  expect(g).toBeInstanceOf(GoneError);
  expect(g.checkpoint).toEqual({ id: "c1", index: 40 });
  expect(g.resumeFrom).toBe(40);
  expect((errorOf(410, body("gone", { checkpoint: null, resumeFrom: 49 }), null, "w") as GoneError).checkpoint).toBeNull();
  expect(errorOf(429, body("rate_limited"), "10", "w")).toBeInstanceOf(RateLimitedError);
  const u = errorOf(503, body("no_leader"), "2", "w") as UnavailableError;
  expect(u).toBeInstanceOf(UnavailableError);
  expect([u.code, u.status, u.retryAfterMs]).toEqual(["no_leader", 503, 2000]);
  expect(errorOf(507, body("disk_full"), "5", "w")).toBeInstanceOf(UnavailableError);
  const s = errorOf(500, { not: "the error shape" }, null, "w");
  expect(s).toBeInstanceOf(ServerError);
  expect(s.code).toBe("http_500");
});

test("nodes come from a cluster file or URLs; the CA from tls.ca beside the file, else ca/ca.pem", () => {
  const dir = mkdtempSync(join(tmpdir(), "cairn-client-unit-"));
  try {
    const file = join(dir, "cluster.json");
    writeFileSync(file, JSON.stringify({ cluster: "x", nodes: [{ id: "n1", api: "https://a:1/" }, { id: "n2", api: "https://b:2" }], tls: { ca: "tls/${id}/ca.pem" } }));
    expect(resolveNodes({ cluster: file })).toEqual({ urls: ["https://a:1", "https://b:2"] });
    mkdirSync(join(dir, "ca"));
    writeFileSync(join(dir, "ca", "ca.pem"), "CA-FALLBACK");
    expect(resolveNodes({ cluster: file }).ca).toBe("CA-FALLBACK");
    mkdirSync(join(dir, "tls", "n2"), { recursive: true });
    writeFileSync(join(dir, "tls", "n2", "ca.pem"), "CA-N2");
    expect(resolveNodes({ cluster: file }).ca).toBe("CA-N2");
    expect(resolveNodes({ cluster: file, ca: "GIVEN", urls: ["https://a:1", "https://c:3"] })).toEqual({ urls: ["https://a:1", "https://b:2", "https://c:3"], ca: "GIVEN" });
    expect(() => resolveNodes({})).toThrow(/no node/);
    expect(() => resolveNodes({ urls: ["a:1"] })).toThrow(/not http/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

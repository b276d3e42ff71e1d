/**
 * Requests the runtime's HTTP parser refuses never reach the app, so the
 * JSON error shape cannot be given to them: Bun.serve and Deno.serve have no
 * hook for parser errors (their error handlers see only exceptions thrown by
 * the fetch handler). This pins down what each runtime answers instead, as
 * the README states it, and that the server keeps serving afterwards. If a
 * runtime starts sending a body, it must be the JSON error shape.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";

const ROOT = resolve(import.meta.dir, "../..");
const PROBE = join(ROOT, "test/platform/http-errors-probe.ts");
let dir: string;
let tlsFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "cairn-http-errors-"));
  const ca = await createCa({ commonName: "http-errors", days: 2 });
  const cert = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1"], days: 2 });
  tlsFile = join(dir, "tls.json");
  writeFileSync(tlsFile, JSON.stringify(cert));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Answer = { status: number | null; body: string; isHttp: boolean };

function probe(cmd: string, args: string[]): Record<string, Answer> {
  const r = spawnSync(cmd, [...args, PROBE, tlsFile], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} probe exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, Answer>;
}

/** An answer made by the runtime: an error status, and no body or the JSON error shape. */
function expectRuntimeError(a: Answer, status: number[]): void {
  expect(status).toContain(a.status ?? -1);
  if (a.body !== "") expect(JSON.parse(a.body).error.code).toBeString();
}

describe.each([
  ["bun", [join(ROOT, "node_modules/.bin/bun"), ["run"]], { version: [505], header: [431] }],
  ["deno", [join(ROOT, "node_modules/.bin/deno"), ["run", "-A"]], { version: [400, 505], header: [400, 431] }],
] as const)("%s", (_name, [cmd, args], codes) => {
  test("parser errors get an error status from the runtime, plain HTTP to the HTTPS port gets no HTTP answer, and the server keeps serving", () => {
    const r = probe(cmd, [...args]);
    expectRuntimeError(r.malformedRequestLine!, [400]);
    expectRuntimeError(r.badHttpVersion!, [...codes.version]);
    expectRuntimeError(r.headerTooLarge!, [...codes.header]);
    expectRuntimeError(r.badHeaderName!, [400]);
    expectRuntimeError(r.badContentLength!, [400]);
    // Bun closes the connection, Deno sends a TLS alert: neither can answer in HTTP (see the README).
    expect(r.plainHttpToHttps!.isHttp).toBe(false);
    expect(r.servingAfter!.status).toBe(200);
    expect(JSON.parse(r.servingAfter!.body)).toEqual({ ok: true });
  }, 90_000);
});

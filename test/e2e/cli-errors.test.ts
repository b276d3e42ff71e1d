/**
 * The binary with wrong input: each mistake exits 2 (usage) or 1 (failure)
 * with one message that names what failed and what to do, never a stack
 * trace, and never leaves a file behind where it failed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveHttp, type HttpServerHandle } from "../../src/platform/http.ts";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";
import { ensureBinary, runCairn } from "./harness.ts";

let dir: string;
beforeAll(() => {
  ensureBinary();
  dir = mkdtempSync(join(tmpdir(), "cairn-cli-errors-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cairn = (...args: string[]) => runCairn(args, { cwd: dir });

/** Exit code, the words the message must have, and no stack trace. */
async function expectError(args: string[], code: 1 | 2, ...words: (string | RegExp)[]): Promise<string> {
  const r = await cairn(...args);
  expect({ args, code: r.code }).toEqual({ args, code });
  for (const w of words) expect(r.err).toMatch(w);
  expect(r.err).not.toMatch(/\n\s+at .*\(|\bat <anonymous>|Error: .*\n\s+at /);
  return r.err;
}

describe("usage errors exit 2", () => {
  test("unknown options and stray arguments, on every command", async () => {
    await expectError(["version", "--bogus"], 2, "unknown option --bogus");
    await expectError(["--version", "--bogus"], 2, "unknown option --bogus");
    await expectError(["version", "extra"], 2, 'unexpected argument "extra"');
    await expectError(["status", "--url", "http://127.0.0.1:1", "extra"], 2, 'unexpected argument "extra"');
    await expectError(["init", "--dir", join(dir, "i0"), "extra"], 2, 'unexpected argument "extra"');
    expect(existsSync(join(dir, "i0"))).toBe(false);
    await expectError(["serve", "--bogus"], 2, "unknown option --bogus");
    await expectError(["nosuch"], 2, 'unknown command "nosuch"', "cairn help");
  });

  test("a negative number is a bad value, not an ambiguous option", async () => {
    await expectError(["init", "--base-port", "-5", "--dir", join(dir, "i1")], 2, '--base-port wants a whole number from 1 to 65535, got "-5"');
    await expectError(["tail", "--since", "-5", "--url", "http://127.0.0.1:1"], 2, '--since wants a whole number from 0');
    await expectError(["bench", "--clients", "-3", "--url", "http://127.0.0.1:1"], 2, '--clients wants a whole number');
    await expectError(["serve", "--writes-in-flight", "0"], 2, '--writes-in-flight wants a whole number from 1 to 1024, got "0"');
    await expectError(["leader", "transfer", "--to", "--url", "http://127.0.0.1:1"], 2, '--to needs a value, but "--url" follows it');
    const err = await cairn("tail", "--since", "-5", "--url", "http://127.0.0.1:1");
    expect(err.err).not.toContain("ambiguous");
  });

  test("missing arguments, bad values and bad URLs are named", async () => {
    await expectError(["put", "k"], 2, "missing argument", "cairn put KEY VALUE");
    await expectError(["tail", "--limit", "x", "--url", "http://127.0.0.1:1"], 2, '--limit wants a whole number from 1 to 1000, got "x"');
    await expectError(["status", "--url", "notaurl"], 2, '--url "notaurl" is not an http:// or https:// URL');
    await expectError(["status", "--url", "https://127.0.0.1:1", "--ca", join(dir, "missing.pem")], 2, "cannot read the CA certificate", "missing.pem");
    await expectError(["init", "--host", "", "--dir", join(dir, "i2")], 2, "--host");
    await expectError(["load", "--in", join(dir, "missing.ndjson"), "--url", "http://127.0.0.1:1"], 2, "no such file");
  });

  test("restore --from a missing file creates nothing and says the file is missing", async () => {
    const from = join(dir, "missing.db");
    const data = join(dir, "restored");
    await expectError(["restore", "--from", from, "--data", data, "--id", "n1"], 2, `--from ${from}: no such file`, "cairn backup");
    expect(existsSync(from)).toBe(false);
    expect(existsSync(data)).toBe(false);
  });

  test("restore --from a file that is not a backup says so and creates nothing", async () => {
    const notDb = join(dir, "not-a-backup.txt");
    writeFileSync(notDb, "hello\n");
    const data = join(dir, "restored2");
    await expectError(["restore", "--from", notDb, "--data", data, "--id", "n1"], 2, "is not a cairn backup");
    await expectError(["restore", "--from", dir, "--data", data, "--id", "n1"], 2, "is not a file (a directory)");
    await expectError(["restore", "--data", data, "--id", "n1"], 2, "--from is required");
    expect(existsSync(data)).toBe(false);
  });

  test("recover refuses a path that is not a data directory", async () => {
    const empty = join(dir, "empty-data");
    mkdirSync(empty);
    await expectError(["recover", "--data", empty, "--id", "n1", "--yes"], 2, "has no cairn.db");
    expect(readdirSync(empty)).toEqual([]);
    await expectError(["recover", "--data", join(dir, "nope"), "--id", "n1", "--yes"], 2, "does not exist");
  });
});

describe("failures exit 1 without a stack trace", () => {
  test("init --dir on a path that cannot be written says so", async () => {
    await expectError(["init", "--dir", "/proc/x"], 1, "cannot write the cluster into --dir /proc/x", "pick a directory");
    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    await expectError(["init", "--dir", file], 1, "is a file, not a directory");
  });

  test("serve --data on a path that cannot be used says so by name", async () => {
    const cfg = join(dir, "c1");
    expect((await cairn("init", "--nodes", "1", "--dir", cfg)).code).toBe(0);
    await expectError(["serve", "--config", join(cfg, "cluster.json"), "--id", "n1", "--data", "/proc/x"], 1, "cannot use the data directory /proc/x (--data)");
    const file = join(dir, "data-file");
    writeFileSync(file, "x");
    await expectError(["serve", "--config", join(cfg, "cluster.json"), "--id", "n1", "--data", file], 2, "is a file, not a directory");
    const junk = join(dir, "junk-data");
    mkdirSync(junk);
    writeFileSync(join(junk, "cairn.db"), "not a database");
    // The data-dir checks may word this differently; it names the file and has no stack trace.
    await expectError(["serve", "--config", join(cfg, "cluster.json"), "--id", "n1", "--data", junk], 1, "cairn.db");
  });

  test("dump --out on a path that cannot be written says so before any request", async () => {
    await expectError(["dump", "--out", "/proc/x/y", "--url", "http://127.0.0.1:1"], 1, "cannot write /proc/x/y");
  });

  test("a node that does not answer: the URL and what to check", async () => {
    await expectError(["status", "--url", "http://127.0.0.1:1"], 1, "no node answered", "http://127.0.0.1:1", "check that the node runs");
  });
});

describe("http vs https", () => {
  let https: HttpServerHandle;
  let http: HttpServerHandle;
  beforeAll(async () => {
    const ca = await createCa({ commonName: "cli-errors", days: 2 });
    const cert = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1"], days: 2 });
    const fetch = () => Response.json({ ok: true });
    https = await serveHttp({ hostname: "127.0.0.1", port: 0, fetch, tls: cert });
    http = await serveHttp({ hostname: "127.0.0.1", port: 0, fetch });
  });
  afterAll(async () => {
    await Promise.all([https?.close(), http?.close()]);
  });

  test("http:// to an HTTPS port says to check http vs https and which to use", async () => {
    await expectError(["status", "--url", `http://127.0.0.1:${https.port}`], 1, "check http vs https in the URL", `use https://127.0.0.1:${https.port}`);
  });

  test("https:// to a plain HTTP port says to check http vs https", async () => {
    await expectError(["status", "--url", `https://127.0.0.1:${http.port}`], 1, "check http vs https in the URL", `use http://127.0.0.1:${http.port}`);
  });
});

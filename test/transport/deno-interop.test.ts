import { afterEach, describe, expect, test } from "bun:test";
import * as tls from "node:tls";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { logsMatching, startNode, testCluster, waitFor, type TestNode } from "./helpers.ts";

const REPO = resolve(import.meta.dir, "../..");
const DENO = join(REPO, "node_modules/.bin/deno");
const PEER_SCRIPT = join(REPO, "test/transport/deno-peer.ts");

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Reads the child's stdout until the first line, which carries its port. */
async function firstLine(stream: ReadableStream<Uint8Array>, ms: number): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + ms;
  try {
    while (!text.includes("\n")) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no port line from the Deno peer within ${ms} ms`);
      const chunk = await Promise.race([reader.read(), new Promise<"timeout">((r) => setTimeout(() => r("timeout"), left))]);
      if (chunk === "timeout") throw new Error(`no port line from the Deno peer within ${ms} ms`);
      if (chunk.done) throw new Error(`the Deno peer exited before printing its port; output so far: ${text}`);
      text += decoder.decode(chunk.value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text.slice(0, text.indexOf("\n"));
}

describe("peer transport across runtimes", () => {
  test("a Deno transport and a Bun transport exchange messages over mutual TLS", async () => {
    const c = await testCluster();
    const bun: TestNode = await startNode("n1", { tls: await c.tls("n1") });
    cleanups.push(() => bun.transport.close());
    const dir = await mkdtemp(join(tmpdir(), "cairn-deno-peer-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, "peer.json");
    await writeFile(config, JSON.stringify({ nodeId: "d1", clusterId: "c1", tls: await c.tls("d1"), peers: { n1: `127.0.0.1:${bun.port}` } }));

    const child = Bun.spawn([DENO, "run", "-A", PEER_SCRIPT, config], { cwd: REPO, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    cleanups.push(async () => {
      child.kill();
      await child.exited;
    });
    let stderr = "";
    void (async () => {
      const decoder = new TextDecoder();
      const reader = child.stderr.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) stderr += decoder.decode(r.value, { stream: true });
    })();
    let line: string;
    try {
      line = await firstLine(child.stdout, 30_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nDeno stderr:\n${stderr}`);
    }
    const { port } = JSON.parse(line) as { port: number };
    const denoLogs = (text: string): Record<string, unknown>[] =>
      stderr
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => String(l.msg).includes(text));

    bun.transport.setPeers(new Map([["d1", `127.0.0.1:${port}`]]));
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255]);
    expect(bun.transport.send("d1", { t: "raft", m: { type: "heartbeat", term: 3, index: 2 ** 40 }, bytes })).toBe(true);
    await waitFor("the echo from Deno", () => bun.received.length === 1, 20_000);
    const got = bun.received[0] as { from: string; payload: { echo: { t: string; m: unknown; bytes: Uint8Array }; runtime: string } };
    expect(got.from).toBe("d1");
    expect(got.payload.runtime).toBe("deno");
    expect(got.payload.echo.m).toEqual({ type: "heartbeat", term: 3, index: 2 ** 40 });
    expect(Array.from(got.payload.echo.bytes)).toEqual(Array.from(bytes));
    // Deno dialled Bun: Bun checked Deno's client certificate and hello.
    expect(logsMatching(bun, "accepted peer connection").some((l) => l.peer === "d1")).toBe(true);

    // String-heavy payloads: what made cbor-x's native string extractor kill Deno and Bun.
    const strings = Array.from({ length: 300 }, (_, i) => `entry ${i} ${"é".repeat(i % 50)}`);
    bun.transport.send("d1", { strings });
    await waitFor("the strings echo", () => bun.received.length === 2, 20_000);
    expect((bun.received[1]?.payload as { echo: { strings: string[] } }).echo.strings).toEqual(strings);

    // The Deno listener refuses a certificate from another CA, and says so.
    const other = await testCluster();
    const intruder = await startNode("n9", { tls: await other.tls("n9") });
    cleanups.push(() => intruder.transport.close());
    intruder.transport.setPeers(new Map([["d1", `127.0.0.1:${port}`]]));
    intruder.transport.send("d1", "let me in");
    await waitFor("Deno logs the refusal", () => denoLogs("TLS handshake failed").length > 0, 10_000);

    // ... and garbage from a client with a good certificate closes only that connection.
    const raw = tls.connect({ host: "127.0.0.1", port, ...(await c.tls("n8")), checkServerIdentity: () => undefined });
    raw.on("error", () => {});
    raw.on("data", () => {});
    await new Promise((r) => raw.once("secureConnect", r));
    raw.write(new Uint8Array([0, 0, 0, 2, 0xff, 0xff]));
    await new Promise((r) => raw.once("close", r));
    await waitFor("Deno logs the bad frame", () => denoLogs("bad frame").length === 1, 10_000);

    bun.transport.send("d1", "still there?");
    await waitFor("the last echo", () => bun.received.length === 3, 10_000);
    expect((bun.received[2]?.payload as { echo: unknown }).echo).toBe("still there?");
    expect(intruder.received).toEqual([]);
  }, 60_000);
});

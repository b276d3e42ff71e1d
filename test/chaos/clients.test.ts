import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { Clients } from "./clients.ts";
import type { E2ECluster } from "../e2e/harness.ts";
import { waitFor } from "../helpers/ports.ts";

// A node that receives every write and never answers it (a slow forward to the leader), then is killed.
const SERVER = `
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: async (req) => {
  if (req.method === "GET") return new Response("", { status: 404 });
  const body = await req.text();
  console.log(JSON.stringify({ method: req.method, path: new URL(req.url).pathname, body }));
  return await new Promise(() => {});
}});
console.log(JSON.stringify({ port: server.port }));
`;

test("a write the node received before it was killed is not recorded as refused, even when Bun's resend of it is refused", async () => {
  const child = spawn(process.execPath, ["-e", SERVER], { stdio: ["ignore", "pipe", "inherit"] });
  const lines: Record<string, string>[] = [];
  let partial = "";
  child.stdout!.on("data", (d: Buffer) => {
    const parts = (partial + d.toString()).split("\n");
    partial = parts.pop()!;
    for (const l of parts) if (l.trim()) lines.push(JSON.parse(l));
  });
  let diedAtMs = Infinity;
  const exited = new Promise<void>((r) => child.once("exit", () => ((diedAtMs = performance.now()), r())));
  let clients: Clients | undefined;
  try {
    const port = Number((await waitFor("the server's port", () => lines.find((l) => l.port !== undefined), 10_000, 10)).port);
    const url = `http://127.0.0.1:${port}`;
    // Keep-alive connections in the pool: Bun resends on a new connection only a request whose reused connection closed.
    await Promise.all(Array.from({ length: 8 }, () => fetch(`${url}/kv/warm`).then((r) => r.text())));
    const cluster = { get: (_node: string, path: string, init?: RequestInit) => fetch(`${url}${path}`, init) } as unknown as E2ECluster;
    clients = new Clients({ cluster, nodes: () => ["n1"], clients: 4, keys: ["k0"], seed: 7, timeoutMs: 10_000, run: "t" });
    clients.start();
    // Every client is blocked on a write the node has received.
    await waitFor("4 writes received", () => lines.filter((l) => l.method !== undefined).length >= 4 || undefined, 10_000, 10);
    child.kill("SIGKILL");
    await exited;
    await clients.stop();
    clients.settleRefused((node, callMs, returnMs) => node === "n1" && diedAtMs >= callMs && diedAtMs - 2000 <= returnMs);
    const received = lines.filter((l) => l.method !== undefined);
    let checked = 0;
    for (const w of received) {
      if (w.method === "PUT") {
        const op = clients.ops.find((o) => o.f === "put" && o.value === w.body)!;
        expect(`put ${w.body}: ${op.outcome}`).not.toBe(`put ${w.body}: failed`);
        checked++;
      } else if (w.method === "POST") {
        const id = (JSON.parse(w.body!) as { data: { id: string } }).data.id;
        const ch = clients.changes.find((c) => c.id === id)!;
        expect(`change ${id}: ${ch.outcome}`).not.toBe(`change ${id}: failed`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
  } finally {
    child.kill("SIGKILL");
    await clients?.stop();
  }
}, 30_000);

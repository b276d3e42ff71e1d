/**
 * A peer transport run as a separate process (by deno-interop.test.ts, under
 * Deno): reads its config from the JSON file named by argv, prints
 * {"port": N} on stdout once listening, and answers every message with
 * {echo: <payload>, runtime}. Exits when stdin closes or on SIGTERM.
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { PeerTransport, type PeerTls } from "../../src/transport/transport.ts";
import { Logger } from "../../src/util/log.ts";

interface Config {
  nodeId: string;
  clusterId: string;
  tls: PeerTls;
  peers: Record<string, string>;
}

const path = process.argv[process.argv.length - 1];
if (path === undefined) throw new Error("usage: deno-peer.ts CONFIG.json");
const cfg = JSON.parse(readFileSync(path, "utf8")) as Config;
const runtime = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined" ? "deno" : "bun";

const transport: PeerTransport<unknown> = new PeerTransport<unknown>({
  nodeId: cfg.nodeId,
  clusterId: cfg.clusterId,
  listen: { host: "127.0.0.1", port: 0 },
  tls: cfg.tls,
  logger: new Logger({ level: "debug" }).with({ node: cfg.nodeId }),
  backoffMsMin: 20,
  backoffMsMax: 200,
  onMessage: (from, payload) => {
    transport.send(from, { echo: payload, runtime });
  },
});
transport.setPeers(new Map(Object.entries(cfg.peers)));
const port = await transport.listen();
process.stdout.write(JSON.stringify({ port }) + "\n");

const stop = (): void => {
  void transport.close().then(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();

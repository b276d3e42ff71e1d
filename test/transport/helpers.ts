/** Test helpers for the peer transport: certificates, transports on loopback, polling. */
import { createCa, createNodeCert, type CertAndKey } from "../../src/transport/certs.ts";
import { PeerTransport, type PeerTransportOptions } from "../../src/transport/transport.ts";
import type { PeerTls } from "../../src/transport/context.ts";
import { memoryLogger } from "../../src/util/log.ts";

export interface TestCluster {
  readonly ca: CertAndKey;
  tls(id: string): Promise<PeerTls>;
}

/** A CA and node certificates made on demand (ids may repeat: each call makes a fresh cert). */
export async function testCluster(): Promise<TestCluster> {
  const ca = await createCa({ commonName: "test CA", days: 2 });
  return {
    ca,
    async tls(id: string): Promise<PeerTls> {
      const node = await createNodeCert({ ca, nodeId: id, hosts: ["127.0.0.1", "localhost"], days: 2 });
      return { ca: ca.cert, cert: node.cert, key: node.key };
    },
  };
}

export interface Received {
  readonly from: string;
  readonly payload: unknown;
}

export interface TestNode {
  readonly id: string;
  readonly transport: PeerTransport<unknown>;
  readonly port: number;
  readonly received: Received[];
  readonly lines: string[];
  /** Log lines parsed as objects. */
  logs(): Record<string, unknown>[];
}

export type NodeOptions = Partial<Omit<PeerTransportOptions<unknown>, "nodeId" | "logger" | "onMessage">> & {
  readonly tls: PeerTransportOptions<unknown>["tls"];
};

/** Starts a transport for node `id` on 127.0.0.1 (port 0 unless given) with an in-memory log. */
export async function startNode(id: string, opts: NodeOptions): Promise<TestNode> {
  const { log, lines } = memoryLogger("debug");
  const received: Received[] = [];
  const transport = new PeerTransport<unknown>({
    clusterId: "c1",
    listen: { host: "127.0.0.1", port: 0 },
    backoffMsMin: 20,
    backoffMsMax: 200,
    connectTimeoutMs: 2000,
    ...opts,
    nodeId: id,
    logger: log.with({ node: id }),
    onMessage: (from, payload) => received.push({ from, payload }),
  });
  const port = await transport.listen();
  return { id, transport, port, received, lines, logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** Polls `cond` until it holds or `ms` pass (then throws with `what`). */
export async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Log lines (parsed) whose message contains `text`. */
export function logsMatching(node: TestNode, text: string): Record<string, unknown>[] {
  return node.logs().filter((l) => typeof l.msg === "string" && l.msg.includes(text));
}

export function peerMap(entries: Record<string, number>): Map<string, string> {
  return new Map(Object.entries(entries).map(([id, port]) => [id, `127.0.0.1:${port}`]));
}

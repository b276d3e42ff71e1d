/**
 * Several real CairnNodes in this process (real SQLite files, real sockets on
 * loopback, plain TCP): for node-level tests that do not need separate
 * processes. End-to-end tests use the built binary instead.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClusterText, type ClusterConfig } from "../src/discovery/load.ts";
import { CairnNode, type CairnNodeOptions } from "../src/node/node.ts";
import type { Fsm } from "../src/statemachine/fsm.ts";
import { Logger, type LogLevel } from "../src/util/log.ts";
import { freePorts, waitFor } from "./ports.ts";

export interface InprocCluster {
  readonly dir: string;
  readonly config: ClusterConfig;
  readonly nodes: Map<string, CairnNode>;
  readonly logs: string[];
  start(id: string): Promise<CairnNode>;
  stop(id: string): Promise<void>;
  leader(): Promise<CairnNode>;
  close(): Promise<void>;
}

export async function clusterConfig(ids: string[], opts: { heartbeatMs?: number; electionMs?: number } = {}): Promise<{ text: string; config: ClusterConfig }> {
  const ports = await freePorts(ids.length * 2);
  const file = {
    cluster: "test",
    nodes: ids.map((id, i) => ({ id, peer: `127.0.0.1:${ports[2 * i]}`, api: `http://127.0.0.1:${ports[2 * i + 1]}` })),
    raft: { heartbeatMs: opts.heartbeatMs ?? 50, electionMs: opts.electionMs ?? 500 },
  };
  const text = JSON.stringify(file, null, 2);
  const r = parseClusterText(text, "/virtual/cluster.json");
  if (!r.ok) throw r.error;
  return { text, config: r.config };
}

export async function inprocCluster(
  ids: string[],
  opts: { logLevel?: LogLevel; heartbeatMs?: number; electionMs?: number; node?: Partial<CairnNodeOptions>; fsmFactory?: () => Fsm } = {},
): Promise<InprocCluster> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-inproc-"));
  const { config } = await clusterConfig(ids, opts);
  const logs: string[] = [];
  const logger = new Logger({ level: opts.logLevel ?? "info", sink: (l) => logs.push(l) });
  const nodes = new Map<string, CairnNode>();
  const c: InprocCluster = {
    dir,
    config,
    nodes,
    logs,
    async start(id) {
      const n = new CairnNode({ id, dataDir: join(dir, id), config, tls: "insecure", logger, ...opts.node, fsm: opts.fsmFactory?.() ?? opts.node?.fsm });
      await n.start();
      nodes.set(id, n);
      return n;
    },
    async stop(id) {
      await nodes.get(id)?.stop({ transfer: false });
      nodes.delete(id);
    },
    async leader() {
      return await waitFor("a leader", () => [...nodes.values()].find((n) => n.status().role === "leader"), 15_000);
    },
    async close() {
      await Promise.all([...nodes.values()].map((n) => n.stop({ transfer: false })));
      nodes.clear();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return c;
}

/** Waits until `node` leads a stable configuration of `voters` voters (not joint). */
export async function waitStableVoters(node: CairnNode, voters: number, timeoutMs = 15_000): Promise<void> {
  await waitFor(`${voters} voters, not joint`, () => {
    const st = node.status();
    return st.members.filter((m) => m.role === "voter").length === voters && !st.joint;
  }, timeoutMs);
}

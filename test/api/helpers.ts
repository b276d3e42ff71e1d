/** A real single CairnNode on loopback with the API app over it, for route tests. */
import { createApp, type ApiOptions } from "../../src/api/app.ts";
import type { CairnNode } from "../../src/node/node.ts";
import { Logger } from "../../src/util/log.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

export interface ApiHarness {
  readonly node: CairnNode;
  readonly cluster: InprocCluster;
  readonly app: ReturnType<typeof createApp>;
  readonly logs: string[];
  /** app.request with a path relative to the app. */
  req(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export async function singleNode(opts: Partial<Omit<ApiOptions, "node" | "logger">> = {}): Promise<ApiHarness> {
  const cluster = await inprocCluster(["n1"]);
  const node = await cluster.start("n1");
  await waitFor("n1 leads", () => node.status().role === "leader" && node.readiness().ready, 15_000);
  const logs: string[] = [];
  const logger = new Logger({ level: "debug", sink: (l) => logs.push(l) });
  const app = createApp({ node, logger, version: "test", ...opts });
  return {
    node,
    cluster,
    app,
    logs,
    req: (path, init) => Promise.resolve(app.request(path, init)),
    close: () => cluster.close(),
  };
}

export const jsonInit = (method: string, body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});

// deno-lint-ignore no-explicit-any
export async function bodyOf(res: Response): Promise<any> {
  return await res.json();
}

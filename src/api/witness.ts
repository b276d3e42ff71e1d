/**
 * A witness (src/node/witness.ts) keeps no state machine, so it answers every
 * client data request (feed, keys, transactions, checkpoints) with 421 and
 * the data nodes to ask instead; /status, /health, /ready, /metrics and the
 * admin leader transfer work as on any node.
 */
import type { Hono } from "hono";
import type { NodeApi } from "../node/api.ts";
import { ApiError, errorResponse } from "./errors.ts";

const DATA_PREFIXES = ["/changes", "/kv", "/txn", "/checkpoints", "/admin/checkpoint"];

function isDataPath(path: string): boolean {
  return DATA_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`));
}

export function registerWitnessGuard(app: Hono, node: NodeApi): void {
  app.use("*", async (c, next) => {
    const w = node.witness?.() ?? null;
    if (w === null || !isDataPath(c.req.path)) return next();
    const list = w.dataNodes.map((d) => `${d.id} (${d.api})`).join(", ");
    return errorResponse(
      new ApiError(421, "witness", `${node.id} is a witness: it keeps no data and serves no client requests; send ${c.req.method} ${c.req.path} to a data node: ${list || "none listed"}`, {
        extra: { dataNodes: w.dataNodes },
      }),
    );
  });
}

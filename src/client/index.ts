/**
 * cairn/client: a typed client of the cairn HTTP API for Bun, Deno and Node
 * 20+ (the outbox and checkpoint loading need SQLite: Bun, Deno, or Node
 * with node:sqlite).
 *
 *   import { CairnClient } from "cairn/client";
 *   const c = new CairnClient({ cluster: "mycluster/cluster.json", token: process.env.CAIRN_TOKEN });
 *   const { index } = await c.post({ temp: 21.5 }, { tags: ["sensor"] });
 *   for await (const ch of c.follow({ since: 0, tags: ["sensor"] })) console.log(ch.index, ch.data);
 */
export { CairnClient, newIdempotencyKey, type KvPutOptions, type ListChangesOptions, type ReadOptions, type WriteOptions } from "./client.ts";
export * from "./errors.ts";
export type { FollowOptions, KvRow, LoadedCheckpoint } from "./follow.ts";
export type { Delivered, Failed, Outbox, OutboxEntry, OutboxOptions, OutboxStatus } from "./outbox.ts";
export { OutboxFullError } from "./outbox.ts";
export type { CallOptions, ClientOptions, ClusterFileLike } from "./transport.ts";
export type * from "./types.ts";

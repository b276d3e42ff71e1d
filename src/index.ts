/**
 * cairn as a library: run a node in your own process with your own
 * deterministic state machine (see examples/embed.ts).
 *
 *   const node = new CairnNode({ id, dataDir, config, tls, logger, fsm: myFsm });
 *   await node.start();
 *   const out = await node.proposeData(bytes);   // on any node: forwarded to the leader
 *   await node.readBarrier();                    // then read your tables: linearizable
 */
export { CairnNode, type CairnNodeOptions } from "./node/node.ts";
export type { NodeApi, NodeStatus, ProposeOutcome, WaitMode } from "./node/api.ts";
export * from "./node/errors.ts";
export type { Fsm, FsmEntry } from "./statemachine/fsm.ts";
export type { Db, Statement } from "./platform/sqlite.ts";
export { loadClusterFile, loadClusterFileSync, parseClusterText, type ClusterConfig, type ClusterNode } from "./discovery/load.ts";
export { watchClusterFile } from "./discovery/watch.ts";
export { createApp } from "./api/app.ts";
export { Logger, type LogLevel } from "./util/log.ts";
export { VERSION } from "./version.ts";

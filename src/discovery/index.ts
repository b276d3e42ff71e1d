/** The cluster file: schema, loading, hot reload, finding this node, and the membership planner. */
export * from "./errors.ts";
export * from "./load.ts";
export * from "./plan.ts";
export * from "./schema.ts";
export * from "./self.ts";
export { validateClusterFile } from "./validate.ts";
export * from "./watch.ts";

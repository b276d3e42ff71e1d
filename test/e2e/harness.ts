/** The end-to-end harness lives in harness/cluster.ts (shared with bench/, which must not import test/). */
export * from "../../harness/cluster.ts";

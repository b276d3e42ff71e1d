/** In-process clusters live in harness/inproc.ts (shared with bench/, which must not import test/). */
export * from "../../harness/inproc.ts";

/** Free ports and polling with a deadline live in harness/ports.ts (shared with bench/, which must not import test/). */
export * from "../../harness/ports.ts";

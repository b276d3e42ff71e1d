/**
 * Test only: the core with known protocol bugs switched on, for the checkers'
 * own tests (the simulator and the protocol tests must find each one). Not
 * exported by index.ts; nothing in src/ imports it (test/raft/surface.test.ts
 * checks that).
 */
import { Raft, type RaftConfig, type UnsafeBugs } from "./raft.ts";

export type { UnsafeBugs } from "./raft.ts";

export class TestRaft extends Raft {
  constructor(config: RaftConfig & { readonly unsafe?: UnsafeBugs }) {
    super(config);
    this.unsafe = config.unsafe ?? {};
  }
}

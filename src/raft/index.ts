/** The Raft core's public surface (the known-bug switches for tests are in testing.ts, not here). */
export * from "./types.ts";
export * from "./errors.ts";
export { Raft, type RaftConfig, type RaftStatus, type RaftView, type ProgressStatus, type ReadOnlyMode } from "./raft.ts";
export { MemoryStorage, limitSize, type LogStorage, type InitialState } from "./storage.ts";
export { SeededRng, type Rng } from "./rng.ts";
export { applyConfChange, allMembers, isJoint, isVoter, confEquals, isEmptyConf } from "./confchange.ts";

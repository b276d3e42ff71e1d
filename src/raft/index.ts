/** The Raft core's public surface. */
export * from "./types.ts";
export * from "./errors.ts";
export { WITNESS_NO_SNAPSHOT } from "./witness.ts";
export { Raft, type RaftConfig, type RaftStatus, type ProgressStatus, type ReadOnlyMode, type UnsafeBugs } from "./raft.ts";
export { MemoryStorage, limitSize, type LogStorage, type InitialState } from "./storage.ts";
export { SeededRng, type Rng } from "./rng.ts";
export { applyConfChange, allMembers, isJoint, isVoter, confEquals, isEmptyConf } from "./confchange.ts";

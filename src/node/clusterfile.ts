/**
 * The cluster file in force, and what a new version of it may change:
 * addresses and membership at once (membership converges, and a shrink of
 * the voters may be held, plan.ts rule 0b); the cluster's name never (the
 * file of another cluster is ignored); the raft timings only at a restart
 * (timing.ts: the new ones are refused until then, with a warning).
 */
import type { ClusterConfig } from "../discovery/load.ts";
import { shrinkHold } from "../discovery/plan.ts";
import type { ConfState } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";
import { timingChange, type NodeTiming } from "./timing.ts";

export interface ClusterFileOptions {
  readonly log: Pick<Logger, "warn">;
  /** The timings in force (fixed at start). */
  readonly timing: NodeTiming;
  /** The core's configuration, if a core runs. */
  conf(): ConfState | undefined;
}

export class ClusterFile {
  private current: ClusterConfig;
  /** Why the file on disk is being ignored (the watcher says), or null: the file is in force. */
  problem: string | null = null;

  constructor(
    config: ClusterConfig,
    private readonly o: ClusterFileOptions,
  ) {
    this.current = config;
  }

  get config(): ClusterConfig {
    return this.current;
  }

  /** A new version of the file: the one it replaces if it is taken, null if it is ignored (another cluster's). */
  update(config: ClusterConfig): ClusterConfig | null {
    const before = this.current;
    if (config.cluster !== before.cluster) {
      this.o.log.warn(
        `cluster file ${config.path} now names cluster ${JSON.stringify(config.cluster)}, but this node belongs to cluster ${JSON.stringify(before.cluster)}: ` +
          `ignored, the last good version stays in force; copy this cluster's file, or put its name back`,
      );
      return null;
    }
    this.current = config;
    const held = this.shrinkHeld();
    if (held) this.o.log.warn(`cluster file ${config.path}: membership change held: ${held}`);
    const timing = this.timingProblem();
    if (timing) this.o.log.warn(`cluster file ${config.path}: ${timing}`);
    return before;
  }

  /** Why the file's membership is held against the voters in force (plan.ts rule 0b), or null. */
  shrinkHeld(): string | null {
    const conf = this.o.conf();
    if (!conf || conf.votersOutgoing.length > 0) return null;
    return shrinkHold({ voters: conf.voters, nodes: this.current.nodes, allowShrink: this.current.allowShrink });
  }

  /** Why the file's raft timings are not in force, or null. */
  timingProblem(): string | null {
    return timingChange(this.o.timing, this.current.raft);
  }
}

/**
 * Every duration the node derives from the cluster file's `raft` section, in
 * one place, once: at start. A reloaded file whose timings differ does not
 * change any of them (the core's ticks, the stall threshold, the removal
 * check, transfer timeouts, the transport's keepalives would otherwise
 * disagree with each other): the change is refused until the node restarts,
 * with a warning and a /status problem (timingChange()).
 */
import type { RaftTiming } from "../discovery/schema.ts";

export interface NodeTiming {
  /** The timings in force (the file's at start). */
  readonly raft: RaftTiming;
  /** One Raft tick. */
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** A leader whose event loop stalls longer than this steps down. */
  readonly stallMs: number;
  /** A follower that has not heard from any leader this long asks whether it was removed; also that probe's timeout. */
  readonly removalCheckMs: number;
  /** A voter silent for more ticks than this does not count as active when the membership planner removes one. */
  readonly contactTicksMax: number;
  /** How long a leadership transfer may take by default. */
  readonly transferTimeoutMs: number;
}

export function nodeTiming(raft: RaftTiming, o: { tickMs?: number; stallMs?: number } = {}): NodeTiming {
  const tickMs = o.tickMs ?? Math.max(5, Math.floor(raft.heartbeatMs / 2));
  const heartbeatTicks = Math.max(1, Math.round(raft.heartbeatMs / tickMs));
  const electionTicks = Math.max(2, heartbeatTicks + 1, Math.round(raft.electionMs / tickMs));
  return {
    raft: { heartbeatMs: raft.heartbeatMs, electionMs: raft.electionMs },
    tickMs,
    electionTicks,
    heartbeatTicks,
    stallMs: o.stallMs ?? raft.electionMs,
    removalCheckMs: raft.electionMs,
    // Three heartbeat rounds: a voter that died just before a removal is planned must not count as
    // active (a removal relying on it would leave a configuration without a working majority).
    contactTicksMax: Math.max(2, Math.round((3 * raft.heartbeatMs) / tickMs) + 1),
    transferTimeoutMs: 2 * raft.electionMs,
  };
}

/** Why the file's timings are not in force (they differ from those the node started with), or null. */
export function timingChange(inUse: NodeTiming, file: RaftTiming): string | null {
  const now = inUse.raft;
  if (now.heartbeatMs === file.heartbeatMs && now.electionMs === file.electionMs) return null;
  return (
    `raft timings changed to heartbeatMs ${file.heartbeatMs}, electionMs ${file.electionMs}; they take effect when the node restarts ` +
    `(in use: ${now.heartbeatMs}, ${now.electionMs}): until then every use keeps the timings in use; restart the nodes one by one to apply them`
  );
}

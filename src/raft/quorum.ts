/**
 * Majority and joint-majority arithmetic (Raft §5.3, thesis §4.3).
 * An empty majority config commits everything and wins every vote, so a
 * joint config with an empty outgoing half behaves like the incoming half.
 */
import type { NodeId } from "./types.ts";

export type VoteResult = "won" | "lost" | "pending";

/** The highest index that a majority of `voters` has matched. */
export function majorityCommitted(voters: ReadonlySet<NodeId>, match: (id: NodeId) => number): number {
  if (voters.size === 0) return Number.MAX_SAFE_INTEGER;
  const acked: number[] = [];
  for (const id of voters) acked.push(match(id));
  acked.sort((a, b) => b - a);
  return acked[Math.floor(voters.size / 2)]!;
}

export function majorityVote(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return "won";
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) yes++;
  }
  const q = Math.floor(voters.size / 2) + 1;
  if (yes >= q) return "won";
  if (yes + missing >= q) return "pending";
  return "lost";
}

/** Both halves of a joint configuration must agree. */
export interface JointVoters {
  readonly incoming: ReadonlySet<NodeId>;
  readonly outgoing: ReadonlySet<NodeId>;
}

export function jointCommitted(v: JointVoters, match: (id: NodeId) => number): number {
  return Math.min(majorityCommitted(v.incoming, match), majorityCommitted(v.outgoing, match));
}

export function jointVote(v: JointVoters, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVote(v.incoming, votes);
  const b = majorityVote(v.outgoing, votes);
  if (a === b) return a;
  if (a === "lost" || b === "lost") return "lost";
  return "pending";
}

/**
 * Witness voters (cluster file `"role": "witness"`): voters that keep a Raft
 * log but no state machine. The rule that keeps a two-data-node + witness
 * cluster from losing an entry acknowledged by the leader and the witness
 * alone (README "Witness"):
 *
 *  1. A witness keeps every log entry until every data voter has it: it
 *     compacts only up to min(its commit, its applied, the smallest match
 *     of the data voters as known in the CURRENT term). A leader tells a
 *     witness that smallest match on every append and heartbeat (`dataMatch`);
 *     a witness leader computes it from its own progress. Only the current
 *     term's figure counts: a data voter's match is a prefix of that term's
 *     leader log, whose committed part is final; an older term's figure may
 *     describe a tail that a later leader overwrote.
 *  2. A witness may win an election (it may be the only live node holding a
 *     committed entry). As leader it proposes nothing but its term's no-op
 *     (and the core's own leave-joint step), and hands leadership to the
 *     first data voter whose log matches its own, at once (TimeoutNow).
 *  3. A witness never sends a snapshot (it has no data to send): by rule 1
 *     a data voter never needs one from it; if one ever did, the witness
 *     reports it (a "dropped" event) and waits for a data leader.
 *
 * Pure helpers; the Raft class holds the state.
 */
import type { Progress } from "./progress.ts";
import type { Tracker } from "./tracker.ts";
import type { NodeId } from "./types.ts";

/** The smallest match among the voters (both halves of a joint configuration) that are not witnesses; 0 if none. */
export function dataVoterMatchMin(trk: Tracker, witnesses: ReadonlySet<NodeId>): number {
  let min = Infinity;
  for (const id of trk.voterIds()) {
    if (witnesses.has(id)) continue;
    const pr: Progress | undefined = trk.progress.get(id);
    min = Math.min(min, pr?.match ?? 0);
  }
  return min === Infinity ? 0 : min;
}

/** The data voter a witness leader should hand leadership to now: one whose log matches the leader's last index. */
export function handOffTarget(trk: Tracker, witnesses: ReadonlySet<NodeId>, lastIndex: number): NodeId | undefined {
  for (const id of [...trk.voterIds()].sort()) {
    if (witnesses.has(id)) continue;
    if (trk.progress.get(id)?.match === lastIndex) return id;
  }
  return undefined;
}

/** Why a witness leader refuses a snapshot send (the event's reason). */
export const WITNESS_NO_SNAPSHOT = "a witness keeps no state machine and cannot send a snapshot; a data leader will";

/**
 * Applying a ConfChange to a ConfState (Raft §6, thesis §4.3 joint consensus).
 * Pure functions: the leader checks a change with them before proposing it,
 * and every node applies committed changes with them, deterministically.
 *
 * Invariants of a valid ConfState:
 *  - voters (incoming) is non-empty once initialised;
 *  - no id is both a voter (in either half) and a learner;
 *  - learnersNext ⊆ votersOutgoing, and is empty outside a joint config.
 */
import type { ConfChange, ConfState, NodeId } from "./types.ts";

export type ConfResult = { ok: true; conf: ConfState } | { ok: false; reason: string };

export function isJoint(c: ConfState): boolean {
  return c.votersOutgoing.length > 0;
}

export function isEmptyConf(c: ConfState): boolean {
  return c.voters.length === 0 && c.votersOutgoing.length === 0 && c.learners.length === 0;
}

/** Every member id: voters of both halves and learners, sorted. */
export function allMembers(c: ConfState): NodeId[] {
  return sorted(new Set([...c.voters, ...c.votersOutgoing, ...c.learners, ...c.learnersNext]));
}

export function isVoter(c: ConfState, id: NodeId): boolean {
  return c.voters.includes(id) || c.votersOutgoing.includes(id);
}

function sorted(s: Iterable<NodeId>): NodeId[] {
  return [...s].sort();
}

export function confEquals(a: ConfState, b: ConfState): boolean {
  const eq = (x: readonly string[], y: readonly string[]) => x.length === y.length && x.every((v, i) => v === y[i]);
  return eq(a.voters, b.voters) && eq(a.votersOutgoing, b.votersOutgoing) && eq(a.learners, b.learners) && eq(a.learnersNext, b.learnersNext);
}

export function applyConfChange(c: ConfState, cc: ConfChange): ConfResult {
  switch (cc.op) {
    case "init":
      return init(c, cc);
    case "enter":
      return enterJoint(c, cc);
    case "leave":
      return leaveJoint(c, cc);
  }
}

function init(c: ConfState, cc: ConfChange): ConfResult {
  if (!isEmptyConf(c)) return { ok: false, reason: "init on a cluster that already has a configuration" };
  const voters = new Set<NodeId>();
  const learners = new Set<NodeId>();
  for (const ch of cc.changes) {
    if (ch.type === "addVoter") voters.add(ch.node);
    else if (ch.type === "addLearner") learners.add(ch.node);
    else return { ok: false, reason: `init cannot remove ${ch.node}` };
  }
  for (const id of voters) learners.delete(id);
  if (voters.size === 0) return { ok: false, reason: "init without voters" };
  return { ok: true, conf: { voters: sorted(voters), votersOutgoing: [], learners: sorted(learners), learnersNext: [] } };
}

function enterJoint(c: ConfState, cc: ConfChange): ConfResult {
  if (isEmptyConf(c)) return { ok: false, reason: "enter on an uninitialised configuration" };
  if (isJoint(c)) return { ok: false, reason: "already in a joint configuration; leave it first" };
  if (cc.changes.length === 0) return { ok: false, reason: "enter with no changes" };
  const outgoing = new Set(c.voters);
  const voters = new Set(c.voters);
  const learners = new Set(c.learners);
  const learnersNext = new Set<NodeId>();
  for (const ch of cc.changes) {
    if (ch.node === "") return { ok: false, reason: "empty node id" };
    switch (ch.type) {
      case "addVoter":
        learners.delete(ch.node);
        learnersNext.delete(ch.node);
        voters.add(ch.node);
        break;
      case "addLearner":
        voters.delete(ch.node);
        // A voter of the old config stays a voter there until the joint state is left.
        if (outgoing.has(ch.node)) learnersNext.add(ch.node);
        else learners.add(ch.node);
        break;
      case "remove":
        voters.delete(ch.node);
        learners.delete(ch.node);
        learnersNext.delete(ch.node);
        break;
    }
  }
  if (voters.size === 0) return { ok: false, reason: "the change would leave no voters" };
  return {
    ok: true,
    conf: { voters: sorted(voters), votersOutgoing: sorted(outgoing), learners: sorted(learners), learnersNext: sorted(learnersNext) },
  };
}

function leaveJoint(c: ConfState, cc: ConfChange): ConfResult {
  if (!isJoint(c)) return { ok: false, reason: "leave outside a joint configuration" };
  if (cc.changes.length > 0) return { ok: false, reason: "leave carries no changes" };
  const learners = new Set([...c.learners, ...c.learnersNext]);
  return { ok: true, conf: { voters: [...c.voters], votersOutgoing: [], learners: sorted(learners), learnersNext: [] } };
}

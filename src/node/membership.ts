/**
 * The leader converges the cluster to the file, one step at a time, with the
 * pure planner of src/discovery/plan.ts deciding the step. Each step is
 * logged once; a wait or refusal is logged when its reason changes.
 */
import type { ClusterConfig } from "../discovery/load.ts";
import { planNextStep, type PeerProgress, type PlanStep } from "../discovery/plan.ts";
import { ConfChangeError, NotLeaderError, ProposalDroppedError, type ConfChangeSingle, type Raft } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";

export class Converger {
  private lastReason = "";
  /** The leader takes the next step no earlier than this (see maybeStep). */
  private nextAt = 0;

  constructor(
    private readonly opts: {
      log: Logger;
      catchUpLagMax: number;
      /**
       * A member counts as active only if it answered within this many ticks. Keep it to a few
       * heartbeats: the planner's quorum checks are only as fresh as this.
       */
      contactTicksMax: number;
      /** At most one step per this long on ticks (soon() brings the next one forward). */
      everyMs?: number;
    },
  ) {}

  /** On a leader's tick at `now`: the next step, if one is due. */
  maybeStep(raft: Raft, config: ClusterConfig, now: number): void {
    if (raft.view.role !== "leader" || now < this.nextAt) return;
    this.nextAt = now + (this.opts.everyMs ?? 0);
    this.step(raft, config);
  }

  /** Something changed (a new file, an applied configuration): the next tick plans again. */
  soon(): void {
    this.nextAt = 0;
  }

  /** Plans and starts the next step; returns it (for tests and status). */
  step(raft: Raft, config: ClusterConfig): PlanStep {
    const st = raft.status();
    if (st.role !== "leader") return { kind: "none" };
    const progress = new Map<string, PeerProgress>();
    for (const [id, p] of st.progress) {
      // The core marks a new member "recently active" before it ever answered (so it can be
      // sent a snapshot at once); promotion needs a real answer: a recent contact and a match.
      const heard = p.ticksSinceContact >= 0 && p.ticksSinceContact <= this.opts.contactTicksMax && p.match > 0;
      progress.set(id, { match: p.match, recentActive: id === st.id || heard });
    }
    const step = planNextStep({
      nodes: config.nodes,
      conf: st.conf,
      leaderId: st.id,
      progress,
      lastIndex: st.lastIndex,
      catchUpLagMax: this.opts.catchUpLagMax,
      allowShrink: config.allowShrink,
    });
    this.execute(raft, step, st.term, config.path);
    return step;
  }

  private execute(raft: Raft, step: PlanStep, term: number, path: string): void {
    switch (step.kind) {
      case "none":
        this.lastReason = "";
        return;
      case "wait":
      case "refuse":
        if (step.reason !== this.lastReason) {
          this.opts.log[step.kind === "wait" ? "info" : "warn"](`membership: ${step.kind}: ${step.reason}`, { term });
        }
        this.lastReason = step.reason;
        return;
      case "hold":
        if (step.reason !== this.lastReason) this.opts.log.warn(`membership: held: cluster file ${path}: ${step.reason}`, { term });
        this.lastReason = step.reason;
        return;
      case "transferLeader":
        this.opts.log.info(`membership: this leader leaves the cluster: handing leadership to ${step.to} first`, { term });
        raft.transferLeadership(step.to);
        return;
      default:
        this.propose(raft, step, term);
    }
  }

  private propose(raft: Raft, step: Extract<PlanStep, { id: string }>, term: number): void {
    const change: ConfChangeSingle =
      step.kind === "addLearner" || step.kind === "demote"
        ? { type: "addLearner", node: step.id }
        : step.kind === "promote"
          ? { type: "addVoter", node: step.id }
          : { type: "remove", node: step.id };
    try {
      const at = raft.proposeConfChange({ op: "enter", changes: [change] });
      this.lastReason = "";
      this.opts.log.info(`membership: ${step.kind} ${step.id} (${change.type}) proposed`, { term, index: at.index });
    } catch (e) {
      // One change at a time: the planner runs again once the pending one is applied.
      if (e instanceof ConfChangeError || e instanceof NotLeaderError || e instanceof ProposalDroppedError) return;
      throw e;
    }
  }
}

/**
 * What a node answers a "probe": the founding check's fields, plus (from this
 * version on) its applied index and the members of its applied configuration,
 * which a node cut off from the leader uses to learn that it was removed.
 */
export interface ProbeReply {
  readonly empty: boolean;
  readonly clusterId: string | null;
  readonly applied?: number;
  readonly members?: readonly string[];
}

export interface MemberView {
  readonly self: string;
  readonly clusterId: string | null;
  /** Members of this node's applied configuration. */
  readonly members: readonly string[];
  readonly leader: boolean;
  readonly removed: boolean;
  /** ms since a message from the leader (Infinity if none yet). */
  readonly silentMs: number;
  readonly lastIndex: number;
}

/**
 * A removed node is never told: the configuration that takes it out is
 * committed by the others, and the leader stops replicating to it. So a
 * member that has not heard from a leader for `everyMs` asks its peers
 * (at most once per `everyMs`). A peer of the same cluster whose applied
 * configuration does not list this node, at an applied index at or past
 * everything this node has in its log, settles it: the configuration that
 * removed this node is committed.
 */
export class RemovalCheck {
  private nextAt = 0;

  constructor(
    private readonly opts: {
      everyMs: number;
      ask: (peer: string) => Promise<unknown>;
      view: () => MemberView;
      onRemoved: (e: { from: string; applied: number }) => void;
    },
  ) {}

  tick(now: number): void {
    const v = this.opts.view();
    if (v.removed || v.leader || v.clusterId === null || !v.members.includes(v.self)) return;
    if (v.silentMs < this.opts.everyMs || now < this.nextAt) return;
    this.nextAt = now + this.opts.everyMs;
    for (const peer of v.members) {
      if (peer === v.self) continue;
      this.opts
        .ask(peer)
        .then((a) => {
          const applied = removalProof(a, this.opts.view());
          if (applied !== null) this.opts.onRemoved({ from: peer, applied });
        })
        .catch(() => {
          // Unreachable or busy: asked again after everyMs.
        });
    }
  }
}

/** The peer's applied index if its answer proves this node was removed, else null. */
export function removalProof(answer: unknown, v: MemberView): number | null {
  if (typeof answer !== "object" || answer === null) return null;
  const a = answer as ProbeReply;
  if (v.removed || v.clusterId === null || a.clusterId !== v.clusterId) return null;
  if (!Array.isArray(a.members) || a.members.length === 0 || typeof a.applied !== "number") return null;
  if (a.members.includes(v.self) || a.applied < v.lastIndex) return null;
  return a.applied;
}

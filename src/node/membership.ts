/**
 * The leader converges the cluster to the file, one step at a time, with the
 * pure planner of src/discovery/plan.ts deciding the step. Each step is
 * logged once; a wait or refusal is logged when its reason changes.
 */
import type { ClusterConfig } from "../discovery/load.ts";
import { planNextStep, type PeerProgress, type PlanStep } from "../discovery/plan.ts";
import { ConfChangeError, NotLeaderError, ProposalDroppedError } from "../raft/errors.ts";
import type { Raft } from "../raft/raft.ts";
import type { ConfChangeSingle } from "../raft/types.ts";
import type { Logger } from "../util/log.ts";

export class Converger {
  private lastReason = "";

  constructor(
    private readonly opts: {
      log: Logger;
      catchUpLagMax: number;
      /** A member counts as active only if it answered within this many ticks. */
      contactTicksMax: number;
    },
  ) {}

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
    });
    this.execute(raft, step, st.term);
    return step;
  }

  private execute(raft: Raft, step: PlanStep, term: number): void {
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

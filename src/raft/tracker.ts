/**
 * The leader's (and candidate's) view of the configuration: who votes, who
 * learns, each member's Progress, and the votes of the current election.
 */
import { Progress } from "./progress.ts";
import { jointCommitted, jointVote, type JointVoters, type VoteResult } from "./quorum.ts";
import { EMPTY_CONF, type ConfState, type NodeId } from "./types.ts";

export class Tracker implements JointVoters {
  conf: ConfState = EMPTY_CONF;
  incoming: ReadonlySet<NodeId> = new Set();
  outgoing: ReadonlySet<NodeId> = new Set();
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();

  constructor(
    private readonly inflightMax: number,
    private readonly inflightBytesMax: number = Infinity,
  ) {}

  /** Switches to `conf`, keeping Progress of members that stay. */
  setConf(conf: ConfState, lastIndex: number): void {
    this.conf = conf;
    this.incoming = new Set(conf.voters);
    this.outgoing = new Set(conf.votersOutgoing);
    const learners = new Set([...conf.learners, ...conf.learnersNext]);
    const members = new Set([...conf.voters, ...conf.votersOutgoing, ...learners]);
    for (const id of [...this.progress.keys()]) {
      if (!members.has(id)) this.progress.delete(id);
    }
    for (const id of members) {
      const isLearner = !this.isVoter(id);
      const pr = this.progress.get(id);
      if (pr) {
        pr.isLearner = isLearner;
        continue;
      }
      const fresh = new Progress({ next: lastIndex + 1, inflightMax: this.inflightMax, inflightBytesMax: this.inflightBytesMax, isLearner });
      // A new member counts as active so it can be sent a snapshot right away.
      fresh.recentActive = true;
      this.progress.set(id, fresh);
    }
  }

  isVoter(id: NodeId): boolean {
    return this.incoming.has(id) || this.outgoing.has(id);
  }

  voterIds(): Set<NodeId> {
    return new Set([...this.incoming, ...this.outgoing]);
  }

  isSingleton(): boolean {
    return this.incoming.size === 1 && this.outgoing.size === 0;
  }

  committed(): number {
    return jointCommitted(this, (id) => this.progress.get(id)?.match ?? 0);
  }

  /** The send tick S such that a quorum acknowledged heartbeats sent at or after S. */
  quorumAckedSendTick(): number {
    return jointCommitted(this, (id) => this.progress.get(id)?.ackedSendTick ?? -1);
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tally(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voterIds()) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: jointVote(this, this.votes) };
  }

  /** Whether a quorum was heard from since the last check (self counts). */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) active.set(id, id === self || pr.recentActive);
    }
    return jointVote(this, active) === "won";
  }
}

/**
 * Leadership transfer (POST /v1/leader/transfer, and a leader's hand-over
 * before it stops). On the leader: pick the target (the caller's, or the
 * other voter with the highest match, recently active first), tell the core,
 * wait for the leader to change. On a follower: forward the request to the
 * leader; that the leader changed while it was open is the success.
 */
import { NONE, type RaftView } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";
import { BadRequestError, NoLeaderError, TimeoutError } from "./errors.ts";

/** What the transfer needs of the core. */
export interface HandoverCore {
  readonly view: RaftView;
  transferLeadership(to: string): void;
}

export interface HandoverOptions {
  readonly id: string;
  core(): HandoverCore | undefined;
  /** A follower asks the leader to hand over (to `to`, or to its choice). */
  forward(lead: string, to: string | null, timeoutMs: number): Promise<{ from: string; to: string }>;
  /** The core was stepped: a Ready may be due. */
  schedule(): void;
  /** Watchers waiting for a leader change, at most. */
  readonly watchersMax: number;
}

export interface TransferRequest {
  readonly to?: string;
  readonly timeoutMs: number;
  /** Forwarded by a follower: this node must be the leader, it forwards no further. */
  readonly forwarded?: boolean;
}

export class Handover {
  private readonly watchers = new Set<() => void>();

  constructor(private readonly o: HandoverOptions) {}

  async transfer(req: TransferRequest): Promise<{ from: string; to: string }> {
    const raft = this.o.core();
    if (!raft || raft.view.leader === NONE) throw new NoLeaderError();
    if (raft.view.role !== "leader") return this.viaLeader(raft.view.leader, req);
    const v = raft.view;
    const to = req.to ?? this.bestVoter(v);
    if (!to) throw new BadRequestError("there is no other voter to hand leadership to");
    if (!v.isVoter(to) || to === this.o.id) throw new BadRequestError(`${to} is not another voter of this cluster (voters: ${v.voterIds().join(", ")})`);
    raft.transferLeadership(to);
    this.o.schedule();
    await this.leaderChange(req.timeoutMs);
    return { from: this.o.id, to: this.o.core()!.view.leader };
  }

  private async viaLeader(lead: string, req: TransferRequest): Promise<{ from: string; to: string }> {
    if (req.forwarded) throw new NoLeaderError(`${this.o.id} is no longer the leader`);
    try {
      return await this.o.forward(lead, req.to ?? null, req.timeoutMs);
    } catch (e) {
      // The transfer's success changes the leader, which fails the open request: report the change.
      const now = this.o.core()?.view.leader ?? NONE;
      if (e instanceof NoLeaderError && now !== NONE && now !== lead) return { from: lead, to: now };
      throw e;
    }
  }

  /** Before this node stops: a leader hands leadership to the most up-to-date voter, if there is one (failure is logged, not thrown). */
  async beforeStop(timeoutMs: number, log: Pick<Logger, "info" | "warn">): Promise<void> {
    if (this.o.core()?.view.role !== "leader" || this.otherVoters().length === 0) return;
    try {
      const t = await this.transfer({ timeoutMs });
      log.info(`handed leadership to ${t.to} before stopping`, { term: this.o.core()?.view.term });
    } catch (e) {
      log.warn("could not hand leadership over before stopping", { error: e });
    }
  }

  /** The voters other than this node. */
  otherVoters(): string[] {
    return this.o.core()?.view.voterIds().filter((v) => v !== this.o.id) ?? [];
  }

  /** The other voter with the highest match (recently active first). */
  private bestVoter(v: RaftView): string | undefined {
    const progress = v.status().progress;
    let best: { id: string; match: number; active: boolean } | undefined;
    for (const id of this.otherVoters()) {
      const p = progress.get(id);
      const c = { id, match: p?.match ?? 0, active: p?.recentActive ?? false };
      if (!best || (c.active && !best.active) || (c.active === best.active && c.match > best.match)) best = c;
    }
    return best?.id;
  }

  /** The leader or role changed (a Ready's soft state): wake the transfers waiting for it. */
  onLeaderChange(): void {
    for (const w of [...this.watchers]) w();
  }

  private leaderChange(timeoutMs: number): Promise<void> {
    if (this.watchers.size >= this.o.watchersMax) return Promise.reject(new TimeoutError("the leadership transfer (too many transfers waiting)", 0));
    return new Promise((resolve, reject) => {
      const check = () => {
        const lead = this.o.core()?.view.leader;
        if (lead && lead !== this.o.id) done(null);
      };
      const done = (err: Error | null) => {
        clearTimeout(timer);
        this.watchers.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new TimeoutError("the leadership transfer", timeoutMs)), timeoutMs);
      this.watchers.add(check);
    });
  }
}

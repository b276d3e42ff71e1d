/**
 * The membership planner: the ONE next step that moves the Raft configuration
 * toward the cluster file. Pure: it reads its input and nothing else. The
 * leader calls it whenever the file, the configuration or its followers'
 * progress changes (and on a timer), carries out the step, and calls again
 * once that step is committed; one change at a time.
 *
 * Terms: V = current voters, L = current learners, F = ids in the file; a
 * file node "wants to be a voter" unless its role is "learner". A node is
 * "active" if it is the leader or its progress says recentActive; "caught up"
 * if lastIndex - match <= catchUpLagMax. quorum(n) = floor(n / 2) + 1.
 *
 * Rules, first match wins:
 *  0. Wait when no step can be taken safely now:
 *     - no voters (not bootstrapped);
 *     - a joint configuration (outgoing voters or learnersNext non-empty):
 *       the core leaves it first;
 *     - the leader is not in V;
 *     - fewer than quorum(|V|) voters are active: nothing could commit.
 *  0b. hold (shrinkHold): W = ids the file wants as voters, R = V \ W (the
 *     voters it removes or demotes). The whole file is held, no step at all,
 *     while W is empty (a file with no voter: "nodes": [] or all learners;
 *     allowShrink does not change that), or while R is more than half of V
 *     (removing 2 of 3, 3 of 5, 3 of 4; removing 1 of 2 or 2 of 4 is not held)
 *     and the file does not say "allowShrink": true. The rule only reads V and
 *     the file, so it holds the same after a reload, a restart or a new leader.
 *     It is stable both ways: nothing moves while held; and a file that is
 *     not held stays so while it is carried out (adds only grow V, and
 *     removing one of R keeps R a minority), so "one edit" means "relative to
 *     the voters in force": removing one voter, waiting until it is out, then
 *     removing the next works step by step.
 *  1. addLearner: the first file node (in file order) not in V ∪ L. Every new
 *     node joins as a learner; adding a learner never changes any quorum.
 *  2. promote: the first file node that wants to be a voter, is in L, active
 *     and caught up. Adding an active voter never loses quorum.
 *  3. remove: the first learner (sorted by id) not in F. Always safe.
 *  4. Reduce the voter set: voters not in F (remove) or whose file role is
 *     "learner" (demote). Candidates are tried inactive first (removing a
 *     dead voter raises fault tolerance), then non-leader before the leader,
 *     then by id. For each candidate X, with V' = V \ {X}:
 *     a. if X is active and a file voter is still a learner (not yet
 *        promoted, whether or not it has been heard from), wait for it: adds
 *        go before removes, so replacing a node keeps the fault tolerance of
 *        the old cluster throughout, even when the new node has not
 *        connected yet. The reason says so; taking the new node out of the
 *        file lets the removal go ahead. (A dead X is removed at once:
 *        that raises fault tolerance.)
 *     b. refuse if V' is empty: a cluster with no voters is dead;
 *     c. refuse if fewer than quorum(|V'|) of V' are active: it would leave
 *        a configuration without a working majority (losing quorum in one
 *        step). Given rule 0 this happens only when X is active and |V| is
 *        odd with exactly quorum(|V|) active (3 voters, 1 down: removing a
 *        live one leaves 1 live of 2). Removing an inactive X never fails c;
 *     d. if X is the leader: transferLeader to the active voter that stays a
 *        voter (in V and a file voter) with the highest match (ties: lowest
 *        id); the new leader then removes or demotes X. Wait if there is no
 *        such voter (a guard: given c and the order of candidates, an
 *        active leaving voter would have been taken out first).
 *     e. otherwise remove X or demote X.
 *     The first candidate that yields a step wins; if none does, the first
 *     wait, else the first refusal, is returned (so several removals at once,
 *     e.g. 2 of 3 voters, are done one at a time, each checked on its own).
 *  5. wait: a file voter is still a learner that is not yet active or not yet
 *     caught up (the reason names it and its lag).
 *  6. none: the configuration is the file's.
 *
 * A step refused or waited on is computed again on the next call, so the
 * cluster converges as soon as nodes come back or the file is fixed.
 */
import type { ConfState, NodeId } from "../raft/index.ts";
import { assert } from "../util/assert.ts";

export interface PlanNode {
  readonly id: NodeId;
  /** Unspecified means "voter". */
  readonly role?: "voter" | "learner";
}

export interface PeerProgress {
  /** Highest log index known to be replicated on the peer. */
  readonly match: number;
  /** Heard from within the last election timeout. */
  readonly recentActive: boolean;
}

export interface PlanInput {
  /** The nodes of the cluster file (ClusterNode fits). */
  readonly nodes: readonly PlanNode[];
  readonly conf: ConfState;
  readonly leaderId: NodeId;
  /** Per member; a missing entry counts as match 0, not active. */
  readonly progress: ReadonlyMap<NodeId, PeerProgress>;
  readonly lastIndex: number;
  /** A learner is promoted once it is at most this many entries behind. */
  readonly catchUpLagMax: number;
  /** The file's "allowShrink": lets one edit take out a majority of the voters (rule 0b). */
  readonly allowShrink?: boolean;
}

export type PlanStep =
  | { readonly kind: "addLearner"; readonly id: NodeId }
  | { readonly kind: "promote"; readonly id: NodeId }
  | { readonly kind: "demote"; readonly id: NodeId }
  | { readonly kind: "remove"; readonly id: NodeId }
  | { readonly kind: "transferLeader"; readonly to: NodeId }
  | { readonly kind: "wait"; readonly reason: string }
  | { readonly kind: "refuse"; readonly reason: string }
  /** Rule 0b: the file is not carried out at all until it is changed. */
  | { readonly kind: "hold"; readonly reason: string }
  | { readonly kind: "none" };

export function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Derived views of the input that the rules share. */
class View {
  readonly voters: ReadonlySet<NodeId>;
  readonly learners: ReadonlySet<NodeId>;
  readonly file: ReadonlyMap<NodeId, "voter" | "learner">;

  constructor(readonly input: PlanInput) {
    this.voters = new Set(input.conf.voters);
    this.learners = new Set(input.conf.learners);
    this.file = new Map(input.nodes.map((n) => [n.id, n.role ?? "voter"]));
    for (const id of this.learners) assert(!this.voters.has(id), () => `conf has ${id} as both voter and learner`);
  }

  active(id: NodeId): boolean {
    return id === this.input.leaderId || this.input.progress.get(id)?.recentActive === true;
  }
  match(id: NodeId): number {
    return this.input.progress.get(id)?.match ?? 0;
  }
  lag(id: NodeId): number {
    return Math.max(0, this.input.lastIndex - this.match(id));
  }
  caughtUp(id: NodeId): boolean {
    return this.lag(id) <= this.input.catchUpLagMax;
  }
  wantsVoter(id: NodeId): boolean {
    return this.file.get(id) === "voter";
  }
  /** File voters that are still learners, in file order. */
  pendingVoters(): NodeId[] {
    return this.input.nodes.map((n) => n.id).filter((id) => this.learners.has(id) && this.wantsVoter(id));
  }
}

export function planNextStep(input: PlanInput): PlanStep {
  const v = new View(input);
  return (
    preconditions(v) ??
    holdStep(input) ??
    planAdd(v) ??
    planPromote(v) ??
    planLearnerRemoval(v) ??
    planVoterReduction(v) ??
    planPendingPromotion(v) ?? { kind: "none" }
  );
}

function list(ids: Iterable<NodeId>): string {
  return `[${[...ids].join(", ")}]`;
}

function preconditions(v: View): PlanStep | null {
  const c = v.input.conf;
  if (c.voters.length === 0) return { kind: "wait", reason: "the configuration has no voters yet (not bootstrapped)" };
  if (c.votersOutgoing.length > 0 || c.learnersNext.length > 0) {
    return {
      kind: "wait",
      reason: `a joint configuration (voters ${list(c.voters)}, outgoing ${list(c.votersOutgoing)}) must be left before the next change`,
    };
  }
  if (!v.voters.has(v.input.leaderId)) {
    return { kind: "wait", reason: `the leader ${JSON.stringify(v.input.leaderId)} is not a voter of the configuration ${list(c.voters)}` };
  }
  const active = c.voters.filter((id) => v.active(id));
  if (active.length < quorum(c.voters.length)) {
    return {
      kind: "wait",
      reason:
        `only ${active.length} of ${c.voters.length} voters are recently active (${list(active)}); ` +
        `no configuration change can commit until ${quorum(c.voters.length)} are (if the others are gone for good: cairn recover)`,
    };
  }
  return null;
}

function holdStep(input: PlanInput): PlanStep | null {
  const reason = shrinkHold({ voters: input.conf.voters, nodes: input.nodes, allowShrink: input.allowShrink === true });
  return reason === null ? null : { kind: "hold", reason };
}

/**
 * Rule 0b on its own (every node shows it in /status, not only the leader):
 * why the file's membership is held against the voters in force, or null.
 */
export function shrinkHold(o: { voters: readonly NodeId[]; nodes: readonly PlanNode[]; allowShrink: boolean }): string | null {
  if (o.voters.length === 0) return null;
  const wanted = new Set(o.nodes.filter((n) => (n.role ?? "voter") === "voter").map((n) => n.id));
  if (wanted.size === 0) {
    return (
      `the cluster file lists no voter (${o.nodes.length === 0 ? "no nodes at all" : "only learners"}), which would leave the ` +
      `cluster with none: nothing is changed; list the voters ${list(o.voters)} again (allowShrink does not allow this)`
    );
  }
  const leaving = o.voters.filter((id) => !wanted.has(id));
  if (2 * leaving.length <= o.voters.length || o.allowShrink) return null;
  return (
    `the cluster file takes ${leaving.length} of the ${o.voters.length} voters out at once (${list(leaving)}), a majority: ` +
    `nothing is changed; if that is meant, add "allowShrink": true to the file, or take them out one at a time ` +
    `(each after the last is out)`
  );
}

function planAdd(v: View): PlanStep | null {
  const n = v.input.nodes.find((n) => !v.voters.has(n.id) && !v.learners.has(n.id));
  return n ? { kind: "addLearner", id: n.id } : null;
}

function planPromote(v: View): PlanStep | null {
  const id = v.pendingVoters().find((id) => v.active(id) && v.caughtUp(id));
  return id !== undefined ? { kind: "promote", id } : null;
}

function planLearnerRemoval(v: View): PlanStep | null {
  const id = [...v.learners].sort().find((id) => !v.file.has(id));
  return id !== undefined ? { kind: "remove", id } : null;
}

function planPendingPromotion(v: View): PlanStep | null {
  const pending = v.pendingVoters();
  if (pending.length === 0) return null;
  const why = pending.map((id) =>
    !v.active(id)
      ? `${id} has not been heard from recently`
      : `${id} is catching up (${v.lag(id)} entries behind, promoted at ${v.input.catchUpLagMax} or fewer)`,
  );
  return { kind: "wait", reason: `waiting to promote learners to voters: ${why.join("; ")}` };
}

interface Reduction {
  readonly id: NodeId;
  readonly kind: "remove" | "demote";
}

function planVoterReduction(v: View): PlanStep | null {
  const candidates: Reduction[] = [...v.voters]
    .filter((id) => !v.wantsVoter(id))
    .map((id): Reduction => ({ id, kind: v.file.has(id) ? "demote" : "remove" }))
    .sort((a, b) => rank(v, a) - rank(v, b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (candidates.length === 0) return null;
  let firstWait: PlanStep | null = null;
  let firstRefusal: PlanStep | null = null;
  for (const c of candidates) {
    const step = planReduction(v, c);
    if (step.kind === "wait") firstWait ??= step;
    else if (step.kind === "refuse") firstRefusal ??= step;
    else return step;
  }
  return firstWait ?? firstRefusal;
}

/** Inactive voters first, the leader last. */
function rank(v: View, c: Reduction): number {
  if (!v.active(c.id)) return 0;
  return c.id === v.input.leaderId ? 2 : 1;
}

function planReduction(v: View, c: Reduction): PlanStep {
  const verb = c.kind === "remove" ? "removing" : "demoting";
  const pending = v.pendingVoters();
  if (v.active(c.id) && pending.length > 0) {
    const state = pending.map((id) => `${id} ${v.active(id) ? `is ${v.lag(id)} entries behind` : "has not been heard from recently"}`);
    return {
      kind: "wait",
      reason:
        `${verb} ${c.id} waits until ${pending.join(", ")} ${pending.length > 1 ? "are voters" : "is a voter"}, ` +
        `so that the cluster keeps its fault tolerance (${state.join("; ")}); ` +
        `take ${pending.length > 1 ? "them" : "it"} out of the cluster file to go ahead without`,
    };
  }
  const rest = [...v.voters].filter((id) => id !== c.id).sort();
  if (rest.length === 0) {
    return { kind: "refuse", reason: `${verb} ${c.id} would leave no voters; the cluster file must list at least one voter` };
  }
  const active = rest.filter((id) => v.active(id));
  if (active.length < quorum(rest.length)) {
    const inactive = rest.filter((id) => !v.active(id));
    return {
      kind: "refuse",
      reason:
        `${verb} ${c.id} would leave voters ${list(rest)} of which only ${active.length} ${list(active)} ` +
        `${active.length === 1 ? "is" : "are"} recently active, fewer than the majority of ${quorum(rest.length)} it needs; ` +
        `bring ${inactive.join(", ")} back, or take ${inactive.length > 1 ? "them" : "it"} out of the cluster file if gone for good` +
        shrinkHint(v, inactive, c.id),
    };
  }
  if (c.id !== v.input.leaderId) return { kind: c.kind, id: c.id };
  const to = transferTarget(v);
  if (to === undefined) {
    return {
      kind: "wait",
      reason: `the leader ${c.id} must hand over leadership before its ${c.kind === "remove" ? "removal" : "demotion"}, but no voter that stays a voter is recently active`,
    };
  }
  return { kind: "transferLeader", to };
}

/** Taking the inactive voters out too would be held (rule 0b): say how to do it instead. */
function shrinkHint(v: View, inactive: readonly NodeId[], id: NodeId): string {
  const leaving = new Set([...v.voters].filter((x) => !v.wantsVoter(x)));
  for (const x of inactive) leaving.add(x);
  if (v.input.allowShrink === true || 2 * leaving.size <= v.voters.size) return "";
  return ` (that takes ${leaving.size} of the ${v.voters.size} voters out at once, which is held: keep ${id} a voter in the file until ${inactive.join(", ")} ${inactive.length > 1 ? "are" : "is"} out, or add "allowShrink": true)`;
}

function transferTarget(v: View): NodeId | undefined {
  const leader = v.input.leaderId;
  const ok = [...v.voters].filter((id) => id !== leader && v.wantsVoter(id) && v.active(id));
  ok.sort((a, b) => v.match(b) - v.match(a) || (a < b ? -1 : a > b ? 1 : 0));
  return ok[0];
}

/** GET /status, its problems, and readiness: this node's view of the cluster, in the contract's shape. */
import type { ClusterConfig } from "../discovery/load.ts";
import { allMembers, isVoter, NONE, type RaftView } from "../raft/index.ts";
import type { CairnFsm } from "../statemachine/cairn.ts";
import type { RaftStore } from "../storage/store.ts";
import type { MemberStatus, NodeStatus } from "./api.ts";

export interface StatusInput {
  readonly id: string;
  readonly raft: RaftView | undefined;
  readonly store: RaftStore;
  /** null when an embedder's state machine replaces cairn's (no feed). */
  readonly fsm: CairnFsm | null;
  readonly config: ClusterConfig;
  readonly tickMs: number;
  readonly removed: boolean;
  readonly stopping: boolean;
  readonly problems: readonly string[];
  readonly version: string;
  /** The newest checkpoint file's index (0: none). */
  readonly checkpointIndex: number;
}

function role(s: StatusInput): NodeStatus["role"] {
  if (s.stopping) return "stopped";
  if (s.removed) return "removed";
  if (!s.raft || s.raft.conf.voters.length === 0) return "joining";
  if (!isVoter(s.raft.conf, s.id)) return "learner";
  return s.raft.role;
}

function members(s: StatusInput): MemberStatus[] {
  const raft = s.raft;
  if (!raft) return [];
  const st = raft.status();
  const byId = new Map(s.config.nodes.map((n) => [n.id, n]));
  return allMembers(st.conf).map((id) => {
    const p = st.progress.get(id);
    const n = byId.get(id);
    return {
      id,
      role: !isVoter(st.conf, id) ? "learner" : n?.role === "witness" ? "witness" : "voter",
      peer: n?.peer ?? null,
      api: n?.api ?? null,
      match: p ? p.match : null,
      lag: p ? Math.max(0, st.lastIndex - p.match) : null,
      lastContactMs: p && p.ticksSinceContact >= 0 ? p.ticksSinceContact * s.tickMs : null,
    };
  });
}

export function buildStatus(s: StatusInput): NodeStatus {
  const raft = s.raft;
  const lead = raft?.leader ?? NONE;
  const feed = s.fsm?.feedState() ?? { first: 1, last: 0 };
  return {
    id: s.id,
    role: role(s),
    term: raft?.term ?? s.store.hardState().term,
    leader: lead === NONE ? null : { id: lead, api: s.config.nodes.find((n) => n.id === lead)?.api ?? null },
    clusterId: s.store.clusterId(),
    cluster: s.config.cluster,
    index: {
      first: s.store.firstIndex(),
      last: raft?.lastIndex ?? s.store.lastIndex(),
      commit: raft?.commit ?? s.store.hardState().commit,
      applied: s.store.appliedIndex(),
      checkpoint: s.checkpointIndex,
    },
    feed: { first: feed.first, last: feed.last },
    members: members(s),
    joint: (raft?.conf.votersOutgoing.length ?? 0) > 0,
    version: s.version,
    formatVersion: s.store.formatVersion(),
    problems: s.problems,
  };
}

/** What /status lists as problems, each a sentence saying what to do. */
export interface ProblemsInput {
  /** Why the node waits (founding, joining), or "". */
  readonly waiting: string;
  /** Why the cluster file on disk is ignored, or null. */
  readonly file: string | null;
  /** Why the file's membership is held against the voters in force, or null. */
  readonly shrinkHeld: string | null;
  /** Why the file's raft timings are not in force, or null. */
  readonly timing: string | null;
  readonly diskFull: Error | null;
  readonly removed: boolean;
  /** On a witness: why it holds many log entries (a data voter lags), or null. */
  readonly witnessHeld: string | null;
  readonly tls: readonly string[];
}

export function problems(p: ProblemsInput): string[] {
  const out: string[] = [];
  if (p.waiting) out.push(p.waiting);
  if (p.file) out.push(p.file);
  if (p.shrinkHeld) out.push(`membership change held: ${p.shrinkHeld}`);
  if (p.timing) out.push(p.timing);
  if (p.diskFull) out.push(p.diskFull.message);
  if (p.removed) out.push("this node was removed from the cluster");
  if (p.witnessHeld) out.push(p.witnessHeld);
  out.push(...p.tls);
  return out;
}

export interface ReadinessInput {
  readonly failure: Error | null;
  readonly stopping: boolean;
  readonly raft: Pick<RaftView, "leader" | "commit"> | undefined;
  readonly waiting: string;
  readonly diskFull: boolean;
  readonly applied: number;
}

/** GET /ready: whether this node serves reads and writes now, and why not. */
export function readiness(r: ReadinessInput): { ready: boolean; reason: string } {
  const raft = r.raft;
  if (r.failure) return { ready: false, reason: `failed: ${r.failure.message}` };
  if (r.stopping) return { ready: false, reason: "stopping" };
  if (!raft) return { ready: false, reason: r.waiting || "not joined yet" };
  if (r.diskFull) return { ready: false, reason: "disk full" };
  if (raft.leader === NONE) return { ready: false, reason: "no leader known" };
  if (r.applied < raft.commit) return { ready: false, reason: `catching up: applied ${r.applied} of ${raft.commit}` };
  return { ready: true, reason: `leader ${raft.leader}, applied ${r.applied}` };
}

/** GET /status: this node's view of the cluster, in the contract's shape. */
import type { ClusterConfig } from "../discovery/load.ts";
import { allMembers, isVoter } from "../raft/confchange.ts";
import type { Raft } from "../raft/raft.ts";
import { NONE } from "../raft/types.ts";
import type { CairnFsm } from "../statemachine/cairn.ts";
import type { RaftStore } from "../storage/store.ts";
import type { MemberStatus, NodeStatus } from "./api.ts";

export interface StatusInput {
  readonly id: string;
  readonly raft: Raft | undefined;
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
  if (!s.raft || s.raft.trk.conf.voters.length === 0) return "joining";
  if (!isVoter(s.raft.trk.conf, s.id)) return "learner";
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
      role: isVoter(st.conf, id) ? "voter" : "learner",
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
  const lead = raft?.lead ?? NONE;
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
      last: raft?.log.lastIndex() ?? s.store.lastIndex(),
      commit: raft?.log.committed ?? s.store.hardState().commit,
      applied: s.store.appliedIndex(),
      checkpoint: s.checkpointIndex,
    },
    feed: { first: feed.first, last: feed.last },
    members: members(s),
    joint: (raft?.trk.conf.votersOutgoing.length ?? 0) > 0,
    version: s.version,
    formatVersion: s.store.formatVersion(),
    problems: s.problems,
  };
}

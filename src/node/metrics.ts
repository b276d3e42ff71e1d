/** The node's metrics in Prometheus text exposition format (version 0.0.4). */
import type { RaftView } from "../raft/index.ts";
import type { RaftStore } from "../storage/store.ts";
import type { PeerTransport } from "../transport/transport.ts";

export interface NodeCounters {
  proposals: number;
  forwarded: number;
  applied: number;
  readRounds: number;
  stalls: number;
  leaderChanges: number;
  diskFull: number;
  badPeerPayloads: number;
  /** Payloads from peers not admitted (not a member, revoked) at the moment they arrived, dropped. */
  refusedPeerPayloads: number;
}

function line(name: string, type: "counter" | "gauge", help: string, value: number, labels = ""): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${labels} ${value}\n`;
}

export function metricsText(m: {
  node: { id: string };
  raft: RaftView | undefined;
  store: RaftStore;
  // deno-lint-ignore no-explicit-any
  transport: PeerTransport<any> | undefined;
  counters: NodeCounters;
  checkpoints?: { built: Record<string, number>; compactions: number; compactedEntries: number };
  diskFull: boolean;
}): string {
  const c = m.counters;
  const r = m.raft;
  let out = "";
  out += line("cairn_raft_term", "gauge", "Current Raft term.", r?.term ?? 0);
  out += line("cairn_raft_is_leader", "gauge", "1 if this node is the leader.", r?.role === "leader" ? 1 : 0);
  out += line("cairn_raft_commit_index", "gauge", "Highest log index known committed.", r?.commit ?? 0);
  out += line("cairn_raft_applied_index", "gauge", "Highest log index applied to the state machine.", m.store.appliedIndex());
  out += line("cairn_raft_last_index", "gauge", "Last log index.", r?.lastIndex ?? m.store.lastIndex());
  out += line("cairn_raft_first_index", "gauge", "First log index still stored.", m.store.firstIndex());
  out += line("cairn_proposals_total", "counter", "Writes proposed on this node as leader.", c.proposals);
  out += line("cairn_forwarded_total", "counter", "Writes forwarded to the leader.", c.forwarded);
  out += line("cairn_applied_entries_total", "counter", "Log entries applied.", c.applied);
  out += line("cairn_read_rounds_total", "counter", "Read-index rounds started.", c.readRounds);
  out += line("cairn_loop_stalls_total", "counter", "Leader step-downs after an event-loop stall.", c.stalls);
  out += line("cairn_leader_changes_total", "counter", "Leader or role changes seen.", c.leaderChanges);
  out += line("cairn_disk_full_total", "counter", "Writes refused by a full disk.", c.diskFull);
  out += line("cairn_disk_full", "gauge", "1 while writes are stopped by a full disk.", m.diskFull ? 1 : 0);
  out += line("cairn_bad_peer_payloads_total", "counter", "Malformed payloads from peers, ignored.", c.badPeerPayloads);
  out += line("cairn_peer_payloads_refused_total", "counter", "Payloads from peers not admitted (not a member, revoked), dropped.", c.refusedPeerPayloads);
  const k = m.checkpoints;
  if (k) {
    out += "# HELP cairn_checkpoints_built_total Checkpoint files built, by why: a follower behind the compacted log (peer), an API or CLI request or backup (request), the node's own paced policy (policy).\n# TYPE cairn_checkpoints_built_total counter\n";
    for (const [reason, n] of Object.entries(k.built)) out += `cairn_checkpoints_built_total{reason="${reason}"} ${n}\n`;
    out += line("cairn_log_compactions_total", "counter", "Raft log compactions (up to the applied index, no checkpoint copy).", k.compactions);
    out += line("cairn_log_compacted_entries_total", "counter", "Raft log entries deleted by compaction.", k.compactedEntries);
  }
  const t = m.transport?.metrics();
  if (t) {
    out += "# HELP cairn_peer_refused_total Peer connections refused or closed by the admission rule, by reason.\n# TYPE cairn_peer_refused_total counter\n";
    for (const [reason, n] of Object.entries({ notMember: 0, revoked: 0, ...t.refusedByKind })) out += `cairn_peer_refused_total{reason="${reason}"} ${n}\n`;
    out += "# HELP cairn_peer_dropped_total Messages to a peer dropped (queue full or unreachable).\n# TYPE cairn_peer_dropped_total counter\n";
    for (const [id, p] of Object.entries(t.peers)) out += `cairn_peer_dropped_total{peer="${id}"} ${p.dropped}\n`;
    out += "# HELP cairn_peer_connected 1 if the outbound connection to the peer is up.\n# TYPE cairn_peer_connected gauge\n";
    for (const [id, p] of Object.entries(t.peers)) out += `cairn_peer_connected{peer="${id}"} ${p.connected ? 1 : 0}\n`;
  }
  return out;
}

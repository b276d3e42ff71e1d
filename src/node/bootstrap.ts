/**
 * Founding a cluster happens once and never by accident (DESIGN.md, "The
 * cluster file"). The rule:
 *  - a node with data never founds anything: it restarts where it was;
 *  - an empty node founds only if it is the first id of the founding list
 *    (`founders`, written by `cairn init`; the file's voters without it) and
 *    every other founder is reachable and empty; it then founds a cluster
 *    whose only voter is itself, and the others join through the normal
 *    membership path (learner, catch up, voter);
 *  - every other empty node waits to be joined, and says so.
 * So two wiped nodes cannot found an empty cluster beside a third that has
 * data: the probe finds the third non-empty (or unreachable) and nobody founds.
 */
import type { ClusterConfig } from "../discovery/load.ts";
import type { ConfChange, Entry } from "../raft/index.ts";

export interface ProbeAnswer {
  readonly empty: boolean;
  readonly clusterId: string | null;
}

export function founders(config: ClusterConfig): string[] {
  if (config.founders && config.founders.length > 0) return [...config.founders];
  return config.nodes.filter((n) => n.role === "voter").map((n) => n.id);
}

/** The founder that may found: the first in the list. */
export function designatedFounder(config: ClusterConfig): string | null {
  return founders(config)[0] ?? null;
}

export type FoundingDecision =
  | { readonly kind: "found" }
  | { readonly kind: "join"; readonly reason: string }
  | { readonly kind: "wait"; readonly reason: string };

/** Decides from what the other founders answered (missing = not reachable yet). */
export function decideFounding(opts: { self: string; config: ClusterConfig; answers: ReadonlyMap<string, ProbeAnswer> }): FoundingDecision {
  const list = founders(opts.config);
  if (list[0] !== opts.self) {
    return { kind: "join", reason: `empty data directory and not the designated founder (${list[0] ?? "none"}): waiting to be added by the cluster's leader` };
  }
  for (const [id, a] of opts.answers) {
    if (!a.empty) return { kind: "join", reason: `founder ${id} already has data (cluster ${a.clusterId ?? "?"}): joining that cluster instead of founding a new one` };
  }
  const missing = list.filter((id) => id !== opts.self && !opts.answers.has(id));
  if (missing.length > 0) {
    const unknown = missing.filter((id) => !opts.config.nodes.some((n) => n.id === id));
    const why = unknown.length > 0 ? ` (${unknown.join(", ")} ${unknown.length > 1 ? "are" : "is"} not in the cluster file, so cannot be reached: fix "founders" or add ${unknown.length > 1 ? "them" : "it"})` : "";
    return { kind: "wait", reason: `waiting for founders ${missing.join(", ")} to be reachable before founding the cluster${why}` };
  }
  return { kind: "found" };
}

/** Entry 1 of a new cluster: the founder as its only voter. */
export function foundingEntry(self: string): Entry {
  const conf: ConfChange = { op: "init", changes: [{ type: "addVoter", node: self }] };
  return { index: 1, term: 1, kind: "conf", data: new Uint8Array(), conf };
}

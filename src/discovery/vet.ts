/**
 * What a running node checks in a new, valid version of the cluster file
 * before it uses it (the watcher's `vet`): things the schema cannot know.
 * A version with any of these problems is ignored with a warning naming the
 * file, and the last good version stays in force, as for a file that does
 * not parse:
 *  - it names another cluster (a file copied from the wrong place);
 *  - it lists no nodes at all (an emptied file, a template): a running
 *    cluster is never converged to nothing, and the addresses in force stay;
 *  - this node runs with TLS and the file drops the "tls" section, or names
 *    TLS files for this node (after `${id}` substitution) that are missing,
 *    unreadable or not PEM: the next restart would fail, so it fails now.
 * Membership changes that are valid but too big (a majority of the voters
 * in one edit) are not vetted here: they are held by the planner (plan.ts,
 * shrinkHold), so that the rest of the file (addresses) still applies.
 */
import type { ClusterConfig } from "./load.ts";
import { tlsForId } from "./load.ts";
import { tlsFileProblems } from "./tlsfiles.ts";

export interface VetOptions {
  /** This node's id (its TLS paths are the templates with `${id}` replaced by it). */
  readonly selfId: string;
  /** The cluster this node belongs to. */
  readonly cluster: string;
  /** False when the node runs with --insecure: the TLS files are not used. */
  readonly tls: boolean;
}

/** Problems (one line each) that make `next` unusable by this running node; empty if none. */
export function vetReload(next: ClusterConfig, o: VetOptions): string[] {
  const out: string[] = [];
  if (next.cluster !== o.cluster) {
    out.push(
      `cluster: the file now names cluster ${JSON.stringify(next.cluster)}, but this node belongs to cluster ${JSON.stringify(o.cluster)}; ` +
        `put the name back, or copy this cluster's file`,
    );
  }
  // With "discovery" the file lists no nodes: DNS does, and an empty answer is never used (srv.ts).
  if (next.nodes.length === 0 && !next.discovery) {
    out.push(`nodes: the file lists no nodes; a running cluster is never emptied by its file: list its nodes again`);
  }
  if (o.tls) {
    if (next.tls === null) {
      out.push(`tls: the file has no "tls" section, but this node runs with TLS (it could not start again with this file); put the section back`);
    } else {
      out.push(...tlsFileProblems(tlsForId(next.tls, o.selfId)));
    }
  }
  return out;
}

/**
 * Whom the peer transport may dial: the cluster file's addresses, plus the
 * last known address of nodes the file no longer lists. Such a node is a
 * member until the leader has removed it and must keep receiving the log
 * till then, and once removed it must still get the answer that tells it so
 * (RemovalCheck). Nothing is dialled until there is something to send.
 */
import type { ClusterConfig } from "../discovery/load.ts";

export class AddressBook {
  /** The last peer address of every node any version of the file listed, oldest first. */
  private readonly last = new Map<string, string>();

  constructor(private readonly o: { readonly self: string; readonly formerPeersMax: number }) {}

  /** The addresses of every peer but this node, for the file now in force. */
  peers(config: ClusterConfig): Map<string, string> {
    for (const n of config.nodes) {
      this.last.delete(n.id); // newest last: the oldest former peers are forgotten first
      this.last.set(n.id, n.peer);
    }
    for (const id of this.last.keys()) {
      if (this.last.size <= this.o.formerPeersMax) break;
      this.last.delete(id);
    }
    const out = new Map(config.nodes.filter((n) => n.id !== this.o.self).map((n) => [n.id, n.peer]));
    for (const [id, addr] of this.last) if (id !== this.o.self && !out.has(id)) out.set(id, addr);
    return out;
  }
}

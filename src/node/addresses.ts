/**
 * Whom the peer transport may dial: the cluster file's addresses, plus the
 * last known address of nodes the file no longer lists. Such a node is a
 * member until the leader has removed it and must keep receiving the log
 * till then, and once removed it must still get the answer that tells it so
 * (RemovalCheck). Nothing is dialled until there is something to send.
 */
import type { ClusterConfig, ClusterNode } from "../discovery/load.ts";
import type { Logger } from "../util/log.ts";
import { BadRequestError } from "./errors.ts";

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

/** Where this node's peer transport listens: its own `peer` address in the file. */
export function selfListen(config: ClusterConfig, self: string): { host: string; port: number } {
  const me = config.nodes.find((n) => n.id === self);
  if (!me) throw new BadRequestError(`node ${self} is not in the cluster file ${config.path}: add it or pass --id of a listed node`);
  return { host: me.peerHost, port: me.peerPort };
}

/** This node's own peer address, if a new version of the file moved it (else null). */
export function ownAddressMove(before: ClusterConfig, after: ClusterConfig, self: string): { from: ClusterNode; to: ClusterNode } | null {
  const was = before.nodes.find((n) => n.id === self);
  const now = after.nodes.find((n) => n.id === self);
  if (!was || !now || (now.peerHost === was.peerHost && now.peerPort === was.peerPort)) return null;
  return { from: was, to: now };
}

/** This node's own peer address changed in the file: its transport listens there from now on, no restart. */
export function followOwnAddress(o: {
  move: { from: ClusterNode; to: ClusterNode };
  transport: { moveListener(to: { host: string; port: number }): Promise<unknown> };
  log: Pick<Logger, "info" | "error">;
}): void {
  const { from, to } = o.move;
  o.transport.moveListener({ host: to.peerHost, port: to.peerPort }).then(
    () => o.log.info(`this node's peer address changed in the cluster file: now listening on ${to.peer} (was ${from.peer})`),
    (e: unknown) =>
      o.log.error(
        `this node's peer address changed in the cluster file to ${to.peer}, but it cannot listen there (${(e as Error).message}); ` +
          `still listening on ${from.peer}: free the port or fix the file`,
      ),
  );
}

/**
 * Which entry of the cluster file is this node.
 *
 * Rules, in order:
 *  1. With `--id`: the entry with that id (exactly; ids are case-sensitive
 *     here even though the file refuses two that differ only in case).
 *  2. Without it: every entry whose peer host is this machine.
 *     - an IP literal matches when it is an address of one of this machine's
 *       interfaces (compared canonically: IPv6 compression, IPv4-mapped IPv6);
 *     - a DNS name matches when it equals this machine's host name (ignoring
 *       case; a short name matches the first label of a full one), and
 *       "localhost" matches when the machine has a loopback address.
 *     No DNS lookups: the answer depends only on the arguments.
 *     Exactly one match is the answer. None, or several (a local test
 *     cluster with every node on 127.0.0.1), is an error that says to pass
 *     --id.
 */
import { isIP } from "node:net";
import { hostname as osHostname, networkInterfaces } from "node:os";
import { SelfAmbiguousError, SelfNotFoundError } from "./errors.ts";
import type { ClusterConfig, ClusterNode } from "./load.ts";
import { canonicalHost } from "./schema.ts";

/** The shape of os.networkInterfaces(): interface name -> its addresses. */
export type InterfaceMap = Readonly<Record<string, readonly { readonly address: string }[] | undefined>>;

export interface FindSelfOptions {
  /** From --id; when given, the only thing that counts. */
  readonly id?: string;
  /** Defaults to os.networkInterfaces(). */
  readonly interfaces?: InterfaceMap;
  /** This machine's host names; defaults to [os.hostname()]. */
  readonly hostnames?: readonly string[];
}

export interface SelfMatch {
  readonly node: ClusterNode;
  readonly how: "id" | "address" | "hostname";
  /** For the start-up log line, e.g. `peer host 10.0.0.2 is an address of interface eth0`. */
  readonly detail: string;
}

export function findSelf(config: ClusterConfig, opts: FindSelfOptions = {}): SelfMatch {
  if (opts.id !== undefined) return byId(config, opts.id);
  const interfaces = opts.interfaces ?? networkInterfaces();
  const hostnames = opts.hostnames ?? [osHostname()];
  const local = localAddresses(interfaces);
  const matches: SelfMatch[] = [];
  for (const node of config.nodes) {
    const m = matchNode(node, local, hostnames);
    if (m) matches.push(m);
  }
  const only = matches[0];
  if (matches.length === 1 && only) return only;
  if (matches.length > 1) {
    const ids = matches.map((m) => m.node.id);
    const hosts = [...new Set(matches.map((m) => m.node.peerHost))].join(", ");
    throw new SelfAmbiguousError(
      ids,
      `cluster file ${config.path}: entries ${ids.join(", ")} all have a peer host of this machine (${hosts}); pass --id to say which one this node is`,
    );
  }
  throw new SelfNotFoundError("noMatch", noMatchMessage(config, [...local.keys()], hostnames));
}

function byId(config: ClusterConfig, id: string): SelfMatch {
  const node = config.nodes.find((n) => n.id === id);
  if (node) return { node, how: "id", detail: `--id ${id}` };
  const ids = config.nodes.map((n) => n.id);
  const known = ids.length > 0 ? `its ids are ${ids.join(", ")}` : "it lists no nodes yet";
  throw new SelfNotFoundError(
    "unknownId",
    `cluster file ${config.path}: --id ${JSON.stringify(id)} is not in it (${known}); pass one of its ids, or add this node to the file`,
  );
}

function noMatchMessage(config: ClusterConfig, addresses: string[], hostnames: readonly string[]): string {
  if (config.nodes.length === 0) {
    return `cluster file ${config.path}: it lists no nodes yet, so this node cannot tell which it is; add it to the file and pass --id`;
  }
  return (
    `cluster file ${config.path}: no entry has a peer host of this machine ` +
    `(its addresses: ${addresses.join(", ") || "none"}; host name: ${hostnames.join(", ") || "none"}); pass --id ID`
  );
}

/** Canonical address -> name of the interface that has it. */
function localAddresses(interfaces: InterfaceMap): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, addrs] of Object.entries(interfaces)) {
    for (const a of addrs ?? []) {
      const key = canonicalHost(a.address);
      if (!out.has(key)) out.set(key, name);
    }
  }
  return out;
}

function isLoopback(addr: string): boolean {
  return addr === "::1" || addr.startsWith("127.");
}

function matchNode(node: ClusterNode, local: Map<string, string>, hostnames: readonly string[]): SelfMatch | null {
  const host = node.peerHost;
  const iface = local.get(host);
  if (iface !== undefined) {
    return { node, how: "address", detail: `peer host ${host} is an address of interface ${iface}` };
  }
  if (isIP(host) !== 0) return null;
  if (host === "localhost") {
    const lo = [...local.entries()].find(([addr]) => isLoopback(addr));
    if (lo) return { node, how: "hostname", detail: `peer host localhost and interface ${lo[1]} has loopback address ${lo[0]}` };
    return null;
  }
  const name = hostnames.find((h) => sameHostName(h, host));
  return name === undefined ? null : { node, how: "hostname", detail: `peer host ${host} is this machine's host name ${name}` };
}

function sameHostName(mine: string, theirs: string): boolean {
  const a = mine.toLowerCase().replace(/\.$/, "");
  const b = theirs.toLowerCase().replace(/\.$/, "");
  if (a === "" || b === "") return false;
  if (a === b) return true;
  const short = (s: string) => s.split(".")[0];
  // "box1" matches "box1.plant.example" and the other way round, but
  // "box1.a.example" does not match "box1.b.example".
  return (!a.includes(".") && a === short(b)) || (!b.includes(".") && b === short(a));
}

/**
 * Who may talk to this node over the peer transport. A certificate signed by
 * the cluster CA only says "made by whoever holds ca.key"; the peer takes part
 * only if its id (certificate CN) is a member of the current Raft
 * configuration or listed in the current cluster file (a joiner), and neither
 * its id nor its certificate's serial is in the file's "revoked" list.
 *
 * Pure: the node hands in the facts it knows and re-checks open connections
 * whenever they change.
 */
import type { ClusterConfig } from "../discovery/load.ts";
import { allMembers, type ConfState } from "../raft/index.ts";
import type { AdmissionRefusal, PeerIdentity } from "../transport/context.ts";

export interface AdmissionFacts {
  /** Members (voters and learners, incoming and outgoing) of the applied Raft configuration. */
  readonly members: readonly string[];
  /** The applied index that configuration is current at (for the log line). */
  readonly appliedIndex: number;
  /** Node ids the current cluster file lists, and its path. */
  readonly fileIds: readonly string[];
  readonly filePath: string;
  /** The file's "revoked" list: node ids or certificate serials (hex, any case, ':' allowed). */
  readonly revoked: readonly string[];
}

/** A serial in one spelling: lower-case hex without separators or leading zeros. */
export function normalizeSerial(serial: string): string {
  const hex = serial.toLowerCase().replace(/[:\s]/g, "");
  const trimmed = hex.replace(/^0+/, "");
  return trimmed === "" ? "0" : trimmed;
}

/** The same facts, prepared for many checks (one per peer payload). */
export class AdmittedSet {
  private readonly members: ReadonlySet<string>;
  private readonly fileIds: ReadonlySet<string>;
  private readonly revokedIds: ReadonlySet<string>;
  private readonly revokedSerials: ReadonlySet<string>;
  /** Changes exactly when the outcome of some check may change. */
  readonly key: string;

  constructor(private readonly facts: AdmissionFacts) {
    this.members = new Set(facts.members);
    this.fileIds = new Set(facts.fileIds);
    this.revokedIds = new Set(facts.revoked);
    this.revokedSerials = new Set(facts.revoked.filter((r) => /^[0-9a-fA-F:\s]+$/.test(r)).map(normalizeSerial));
    this.key = JSON.stringify([[...this.members].sort(), [...this.fileIds].sort(), [...facts.revoked].sort()]);
  }

  /** null if `peer` is admitted, else why not. */
  check(peer: PeerIdentity): AdmissionRefusal | null {
    const f = this.facts;
    if (this.revokedIds.has(peer.id)) {
      return { kind: "revoked", reason: `node ${peer.id} is revoked: its id is in the "revoked" list of cluster file ${f.filePath}` };
    }
    if (peer.serial !== null && this.revokedSerials.has(normalizeSerial(peer.serial))) {
      return { kind: "revoked", reason: `the certificate of node ${peer.id} (serial ${peer.serial}) is revoked: its serial is in the "revoked" list of cluster file ${f.filePath}` };
    }
    if (this.members.has(peer.id) || this.fileIds.has(peer.id)) return null;
    const members = f.members.length > 0 ? f.members.join(",") : "none yet";
    return {
      kind: "notMember",
      reason:
        `node ${peer.id} is not a member of the Raft configuration (applied index ${f.appliedIndex}: ${members}) ` +
        `and not listed in cluster file ${f.filePath} (${f.fileIds.join(",")}): to add it, list it in the cluster file`,
    };
  }
}

export interface AdmissionOptions {
  /** The applied configuration (the core's, or the store's before a core runs). */
  conf(): ConfState;
  /** The cluster file in force. */
  config(): ClusterConfig;
  appliedIndex(): number;
  /** What a refused non-member is told (a removed node learns from it that it is out). */
  refusalInfo(): unknown;
  /** The admitted set changed: the open peer connections are checked again. */
  recheck(): void;
}

/**
 * The transport's admission rule over the configuration and file in force:
 * the admitted set is built once per change of either (a check runs on every
 * peer payload), and the open connections are checked again when it changes.
 */
export class Admission {
  private cache: { conf: ConfState; config: ClusterConfig; set: AdmittedSet } | undefined;
  /** The key of the set the open peer connections were last checked against. */
  private checkedKey = "";

  constructor(private readonly o: AdmissionOptions) {}

  /** Who may talk to this node now: members of the applied configuration and nodes the file lists, less revoked ones. */
  current(): AdmittedSet {
    const conf = this.o.conf();
    const config = this.o.config();
    const c = this.cache;
    if (c !== undefined && c.conf === conf && c.config === config) return c.set;
    const set = new AdmittedSet({
      members: allMembers(conf),
      appliedIndex: this.o.appliedIndex(),
      fileIds: config.nodes.map((n) => n.id),
      filePath: config.path,
      revoked: config.revoked ?? [],
    });
    // Without a core the conf is parsed afresh each time: cache by content then.
    if (c !== undefined && c.set.key === set.key) {
      this.cache = { ...c, conf };
      return c.set;
    }
    this.cache = { conf, config, set };
    return set;
  }

  /** The transport's check (every handshake, either direction). */
  admit(p: PeerIdentity): AdmissionRefusal | null {
    const r = this.current().check(p);
    if (r === null || r.kind !== "notMember") return r;
    // A removed node can no longer ask whether it is out (its probes are refused): the refusal tells it.
    return { ...r, info: this.o.refusalInfo() };
  }

  /** The admitted set may have changed: close the connections of peers no longer admitted. */
  refresh(): void {
    const key = this.current().key;
    if (key === this.checkedKey) return;
    const first = this.checkedKey === "";
    this.checkedKey = key;
    if (!first) this.o.recheck();
  }
}

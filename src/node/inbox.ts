/**
 * What arrives from peers: each payload is checked (its sender still
 * admitted, its shape, a Raft message's fields and sender) before it is
 * handed on: Raft messages to the core, forwarded writes and transfer
 * requests to this node (answered with their outcome), probes answered,
 * answers to this node's own requests settled, checkpoint transfers to
 * snapshots.ts.
 */
import type { SnapPayload } from "../checkpoint/transfer.ts";
import type { Message } from "../raft/index.ts";
import { LogLimiter } from "../transport/limiter.ts";
import type { Logger } from "../util/log.ts";
import type { AdmittedSet } from "./admission.ts";
import type { ProposeOutcome, WaitMode } from "./api.ts";
import type { NodeCounters } from "./metrics.ts";
import { isPeerPayload, toWireError, type PeerCalls, type PeerPayload } from "./peer.ts";
import { messageProblem } from "./wire.ts";

export interface InboxOptions {
  readonly id: string;
  readonly log: Logger;
  readonly counters: Pick<NodeCounters, "refusedPeerPayloads" | "badPeerPayloads">;
  /** Who may talk to this node now. */
  admitted(): AdmittedSet;
  /** The node stops: nothing more is handled. */
  stopping(): boolean;
  send(to: string, p: PeerPayload): boolean;
  /** A checked Raft message for the core. */
  raft(m: Message): void;
  /** A write a follower forwarded to this node (not forwarded again). */
  forwarded(bytes: Uint8Array, wait: WaitMode): Promise<ProposeOutcome>;
  /** A follower asks this node, the leader, to hand over leadership. */
  transfer(to: string | undefined): Promise<unknown>;
  /** The answer to a probe (founding, removal check). */
  probe(): unknown;
  readonly calls: Pick<PeerCalls, "answer">;
  readonly snapshots: { onPayload(from: string, p: SnapPayload): void };
}

export class Inbox {
  private readonly logLimiter = new LogLimiter({ intervalMs: 10_000, burst: 2, keysMax: 1024 });

  constructor(private readonly o: InboxOptions) {}

  onPayload(from: string, p: PeerPayload): void {
    const o = this.o;
    if (o.stopping()) return;
    // Defence in depth: the transport admits only members, but membership changes under open connections.
    const refusal = o.admitted().check({ id: from, serial: null });
    if (refusal !== null) {
      o.counters.refusedPeerPayloads++;
      const suppressed = this.logLimiter.take(`payload:${from}`);
      if (suppressed !== undefined) o.log.warn(`dropped a payload from peer ${from}: ${refusal.reason}`, { peer: from, refusal: refusal.kind, suppressedLines: suppressed });
      return;
    }
    if (!isPeerPayload(p)) {
      o.counters.badPeerPayloads++;
      o.log.warn(`ignored a malformed payload from ${from}`);
      return;
    }
    switch (p.t) {
      case "raft":
        return this.onRaftMessage(from, p.m);
      case "fwd":
        return void this.answer(from, p.id, o.forwarded(p.cmd, p.wait));
      case "xfer":
        return void this.answer(from, p.id, o.transfer(p.to ?? undefined));
      case "probe":
        return void this.answer(from, p.id, Promise.resolve(o.probe()));
      case "resp":
        return o.calls.answer(from, p);
      default:
        return o.snapshots.onPayload(from, p);
    }
  }

  private onRaftMessage(from: string, m: Message): void {
    const problem = messageProblem(m, this.o.id);
    if (problem !== null || m.from !== from || m.type === "snap") {
      this.o.counters.badPeerPayloads++;
      this.o.log.warn(`ignored a malformed raft message from ${from}: ${problem ?? (m.type === "snap" ? "snapshots arrive only as checkpoint transfers" : `claims to be from ${m.from}`)}`);
      return;
    }
    this.o.raft(m);
  }

  private async answer(to: string, id: number, work: Promise<unknown>): Promise<void> {
    try {
      this.o.send(to, { t: "resp", id, ok: true, value: await work });
    } catch (e) {
      this.o.send(to, { t: "resp", id, ok: false, error: toWireError(e) });
    }
  }
}

/**
 * Test-only network faults inside the peer transport. Off unless the
 * environment variable CAIRN_TEST_FAULTS names a file (read in one place:
 * src/cli/serve.ts); production nodes never construct a FaultHook.
 *
 * The file is JSON, polled every 100 ms and re-read when it changes; a
 * missing file means no faults, an unparsable one keeps the last good rules:
 *
 *   { "links": [ { "from": "n1", "to": "n3", "loss": 1 },
 *                { "from": "*",  "to": "*",  "loss": 0.2 } ] }
 *
 * A node applies the rules whose "to" is its own id (or "*") to the frames it
 * receives from peer "from" (or "*"), on every connection, hellos included;
 * the first matching rule wins. "loss" is the probability (0..1) that a
 * frame is lost; 1 is a cut: sockets stay open, nothing gets through. For a
 * symmetric cut of n3, list both directions (n1->n3, n3->n1, n2->n3, n3->n2).
 *
 * A lost frame is handled the way TCP handles a lost segment: it and every
 * later frame of the same connection wait (head-of-line blocking) for a
 * retransmission after an RTO that starts at 200 ms and doubles with each
 * further loss up to 120 s (Linux's TCP_RTO_MIN / TCP_RTO_MAX); when one gets
 * through, every frame held behind it is delivered at once (they arrived and
 * waited out of order, as with SACK). The RTO stays backed off until the
 * "ACK" of a retransmission gets back (lost with the same probability), so the
 * next loss on that connection waits as long. So, as with real TCP, a connection that
 * lived through a long cut stays silent for a while after the heal, and heavy
 * loss stalls a connection for seconds at a time.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import type { Logger } from "../util/log.ts";

const POLL_MS = 100;
const RTO_MS_MIN = 200;
const RTO_MS_MAX = 120_000;
/** Frames one lane holds back at most; beyond it, arriving frames are discarded (the lane is dead anyway). */
const LANE_FRAMES_MAX = 100_000;
const RULES_MAX = 1000;

interface Rule {
  readonly from: string;
  readonly to: string;
  readonly loss: number;
}

function parseRules(text: string): Rule[] {
  const doc = JSON.parse(text) as { links?: unknown };
  if (!Array.isArray(doc.links) || doc.links.length > RULES_MAX) throw new Error(`"links" must be an array of at most ${RULES_MAX} rules`);
  return doc.links.map((r: { from?: unknown; to?: unknown; loss?: unknown }) => {
    if (typeof r.from !== "string" || typeof r.to !== "string" || typeof r.loss !== "number" || !(r.loss >= 0 && r.loss <= 1)) {
      throw new Error(`rule ${JSON.stringify(r)} needs string "from" and "to" and a "loss" from 0 to 1`);
    }
    return { from: r.from, to: r.to, loss: r.loss };
  });
}

export class FaultHook {
  private rules: Rule[] = [];
  private stamp = "";
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly file: string,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {
    this.log.warn("TEST FAULT HOOK ENABLED: peer frames are dropped as the faults file says", { file });
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Probability that a frame from `from` to this node is lost now. */
  lossFrom(from: string): number {
    for (const r of this.rules) {
      if ((r.from === from || r.from === "*") && (r.to === this.nodeId || r.to === "*")) return r.loss;
    }
    return 0;
  }

  /** The hold-back state of one connection. */
  lane(): FaultLane {
    return new FaultLane(this);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private poll(): void {
    try {
      if (!existsSync(this.file)) {
        if (this.stamp !== "") this.log.info("faults file gone: no faults", { file: this.file });
        this.stamp = "";
        this.rules = [];
        return;
      }
      const st = statSync(this.file);
      const stamp = `${st.mtimeMs}:${st.size}`;
      if (stamp === this.stamp) return;
      this.rules = parseRules(readFileSync(this.file, "utf8"));
      this.stamp = stamp;
      this.log.info("faults file read", { file: this.file, rules: this.rules });
    } catch (e) {
      this.log.warn("faults file unreadable; keeping the previous rules", { file: this.file, error: String(e) });
    }
  }
}

/** Frames of one connection held back behind a lost one, as TCP holds a stream behind a lost segment. */
export class FaultLane {
  private readonly held: { from: string; deliver: () => void }[] = [];
  private rtoMs = RTO_MS_MIN;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(private readonly hook: FaultHook) {}

  /** Calls `deliver` now, later (after "retransmissions"), or never (lane closed first). */
  receive(from: string, deliver: () => void): void {
    if (this.closed) return;
    if (this.held.length > 0) {
      if (this.held.length < LANE_FRAMES_MAX) this.held.push({ from, deliver });
      return;
    }
    if (Math.random() >= this.hook.lossFrom(from)) {
      deliver();
      return;
    }
    this.held.push({ from, deliver });
    this.arm();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.held.length = 0;
  }

  private arm(): void {
    this.timer = setTimeout(() => this.retransmit(), this.rtoMs);
  }

  private retransmit(): void {
    const head = this.held[0];
    if (this.closed || head === undefined) return;
    if (Math.random() < this.hook.lossFrom(head.from)) {
      this.rtoMs = Math.min(this.rtoMs * 2, RTO_MS_MAX);
      this.arm();
      return;
    }
    // The frames behind it arrived meanwhile and wait in the receiver's out-of-order queue (SACK): all go up now.
    const held = this.held.splice(0);
    // TCP keeps the backed-off RTO until an ACK of new data gets back, itself lost as often.
    if (Math.random() >= this.hook.lossFrom(head.from)) this.rtoMs = RTO_MS_MIN;
    for (const h of held) {
      if (this.closed) return;
      h.deliver();
    }
  }
}

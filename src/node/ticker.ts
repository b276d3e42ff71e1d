/**
 * Time entering the core, and the stall detector. Time reaches Raft only as
 * ticks: on each timer callback the ticks that elapsed since the last one
 * are given (at least one, at most an election timeout's worth), so election
 * timers and the read lease age with real time, not with timer callbacks.
 *
 * The stall detector: a leader whose event loop stalled past stallMs (GC
 * pause, blocked disk, SIGSTOP) steps down before it does anything else. The
 * node runs it on every tick and before every input (peer message, write,
 * read), because after a long pause a message or a request may be served
 * before the overdue tick; the others may have elected a new leader
 * meanwhile, and a lease taken in ticks did not age while the process stood
 * still.
 *
 * No clock of its own: every call takes `now` (milliseconds, monotonic), so
 * it runs the same over a fake clock.
 */
import type { RaftView } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";
import type { NodeTiming } from "./timing.ts";

/** What the ticker needs of the core. */
export interface TickCore {
  readonly view: Pick<RaftView, "role" | "term">;
  stepDown(reason: string): void;
}

export interface TickerOptions {
  readonly timing: Pick<NodeTiming, "tickMs" | "electionTicks" | "stallMs">;
  readonly log: Pick<Logger, "warn">;
}

export class Ticker {
  /** When the last tick ran (0: not started). */
  private lastTickAt = 0;

  constructor(private readonly o: TickerOptions) {}

  /** The timer starts now: stalls are measured from here. */
  start(now: number): void {
    this.lastTickAt = now;
  }

  /** A timer tick at `now`: the stall check, then how many Raft ticks are due since the last tick. */
  tick(core: TickCore | undefined, now: number): { ticks: number; stalled: boolean } {
    const stalled = this.checkStall(core, now);
    const elapsed = now - this.lastTickAt;
    this.lastTickAt = now;
    const t = this.o.timing;
    return { ticks: Math.min(t.electionTicks, Math.max(1, Math.round(elapsed / t.tickMs))), stalled };
  }

  /** Steps a leader down if the loop stood still past stallMs since the last tick; true if it did. */
  checkStall(core: TickCore | undefined, now: number): boolean {
    const late = now - this.lastTickAt;
    const stallMs = this.o.timing.stallMs;
    if (!core || late <= stallMs || core.view.role !== "leader" || this.lastTickAt === 0) return false;
    this.o.log.warn(`event loop stalled for ${Math.round(late)} ms (threshold ${stallMs} ms): stepping down rather than serving stale leadership`, { term: core.view.term });
    core.stepDown(`event loop stalled ${Math.round(late)} ms`);
    return true;
  }
}

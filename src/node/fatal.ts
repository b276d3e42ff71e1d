/**
 * The one path for errors the node cannot go on after: any database error in
 * the loop other than a full disk (that one stops writes until space returns),
 * a failed invariant, anything a tick, a Ready or a peer message threw.
 * Crash-only: the node stops serving at once (not ready, /health 503, every
 * request refused), logs one line, and the embedder is told (serve ends the
 * process, for a supervisor to restart it; a damaged database is then refused
 * at start).
 */
import { DbCorruptError } from "../platform/sqlite.ts";
import type { Logger } from "../util/log.ts";

export interface CrashOnlyOptions {
  readonly log: Pick<Logger, "error">;
  /** Stops the node (no leadership hand-over). */
  stop(): Promise<void>;
  /** The node stops already: nothing more is reported. */
  stopping(): boolean;
  /** The embedder's callback (CairnNodeOptions.onFatal). */
  readonly onFatal?: (err: Error) => void;
  /** The embedder is told within this long even if stopping hangs. */
  readonly tellWithinMs: number;
}

export class CrashOnly {
  private failure: Error | null = null;

  constructor(private readonly o: CrashOnlyOptions) {}

  /** The error that stopped this node, or null. */
  get failed(): Error | null {
    return this.failure;
  }

  fatal(err: unknown): void {
    if (this.failure || this.o.stopping()) return;
    const e = err instanceof Error ? err : new Error(String(err));
    this.failure = e;
    const damaged = e instanceof DbCorruptError ? " (the database is damaged: restore this data directory from a checkpoint or backup, or rejoin with an empty one)" : "";
    this.o.log.error(`fatal: ${e.message}${damaged}; this node stops now and the process exits (restart it)`, { error: e.name, stack: e.stack });
    // Stopping is bounded: a peer connection that does not close must not keep a failed process alive.
    let told = false;
    const tell = () => {
      if (told) return;
      told = true;
      this.o.onFatal?.(e);
    };
    const timer = setTimeout(tell, this.o.tellWithinMs);
    void this.o
      .stop()
      .catch(() => undefined) // the failure that matters is logged above
      .finally(() => {
        clearTimeout(timer);
        tell();
      });
  }

  /** Runs a timer's, a tick's or a peer message's work: what it throws is fatal, never swallowed or repeated. */
  guarded(fn: () => void): void {
    if (this.o.stopping()) return;
    try {
      fn();
    } catch (e) {
      this.fatal(e);
    }
  }
}

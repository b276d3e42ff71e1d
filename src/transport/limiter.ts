/**
 * Rate limit for repetitive log lines (a dead peer, a full queue, a port
 * scanner): per key, at most `burst` lines per `intervalMs`; the next line
 * allowed after a quiet spell reports how many were suppressed.
 */
export class LogLimiter {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(
    private readonly opts: { intervalMs: number; burst: number; keysMax: number; now?: () => number },
  ) {}

  /** undefined: suppress this line. A number: log it, with that many lines suppressed before it. */
  take(key: string): number | undefined {
    const now = (this.opts.now ?? Date.now)();
    let w = this.windows.get(key);
    if (w === undefined || now - w.start >= this.opts.intervalMs) {
      const suppressed = w?.suppressed ?? 0;
      // Bounded memory: forget everything rather than grow without limit (keys may be remote addresses).
      if (w === undefined && this.windows.size >= this.opts.keysMax) this.windows.clear();
      w = { start: now, count: 0, suppressed: 0 };
      this.windows.set(key, w);
      w.count = 1;
      return suppressed;
    }
    if (w.count < this.opts.burst) {
      w.count++;
      return 0;
    }
    w.suppressed++;
    return undefined;
  }
}

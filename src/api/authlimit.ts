/**
 * Failed authentications per client address: more than failuresMax within
 * windowMs from one address and that address gets 429 (with Retry-After)
 * for every request that needs authentication until its window ends, so a
 * token cannot be guessed at line rate (it cannot be guessed at all, but the
 * log and the CPU are spared too). A fixed window per address; the table
 * holds at most addressesMax addresses, the oldest dropped first, so a flood
 * of spoofed or many distinct addresses costs bounded memory.
 */
export interface FailureLimits {
  readonly failuresMax: number;
  readonly windowMs: number;
  readonly addressesMax: number;
}

export const FAILURE_LIMITS_DEFAULT: FailureLimits = { failuresMax: 20, windowMs: 10_000, addressesMax: 10_000 };

interface Window {
  startMs: number;
  failures: number;
}

export class FailureLimiter {
  private readonly table = new Map<string, Window>();
  constructor(
    readonly limits: FailureLimits = FAILURE_LIMITS_DEFAULT,
    /** Monotonic: a wall-clock step must not end or stretch a window. */
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** Seconds to wait before `address` may try again, or 0 when it may now. */
  blockedSec(address: string): number {
    const w = this.table.get(address);
    if (!w) return 0;
    const left = w.startMs + this.limits.windowMs - this.nowMs();
    if (left <= 0) {
      this.table.delete(address);
      return 0;
    }
    return w.failures >= this.limits.failuresMax ? Math.max(1, Math.ceil(left / 1000)) : 0;
  }

  /** Records one failed authentication from `address`. */
  fail(address: string): void {
    const now = this.nowMs();
    let w = this.table.get(address);
    if (w && now - w.startMs >= this.limits.windowMs) {
      this.table.delete(address);
      w = undefined;
    }
    if (!w) {
      while (this.table.size >= this.limits.addressesMax) {
        const oldest = this.table.keys().next().value;
        if (oldest === undefined) break;
        this.table.delete(oldest);
      }
      this.table.set(address, (w = { startMs: now, failures: 0 }));
    }
    w.failures++;
  }

  get addresses(): number {
    return this.table.size;
  }
}

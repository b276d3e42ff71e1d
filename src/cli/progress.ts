/**
 * Progress on stderr: a redrawn line on a terminal, plain lines (at most one
 * a second) otherwise, so logs and CI output stay readable.
 */
export class Progress {
  private n = 0;
  private lastAt = 0;
  private readonly t0 = performance.now();
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(
    private readonly verb: string,
    private readonly unit: string,
  ) {}

  add(k: number): void {
    this.n += k;
    const now = performance.now();
    if (now - this.lastAt < (this.tty ? 100 : 1000)) return;
    this.lastAt = now;
    this.show(false);
  }

  done(): void {
    this.show(true);
  }

  private show(final: boolean): void {
    const secs = (performance.now() - this.t0) / 1000;
    const rate = secs > 0 ? Math.round(this.n / secs) : this.n;
    const text = `${this.verb} ${this.n} ${this.unit} (${rate}/s)${final ? ", done" : ""}`;
    if (this.tty) {
      const bar = "#".repeat(Math.min(30, Math.floor(secs * 4) % 31)).padEnd(30, ".");
      process.stderr.write(`\r[${final ? "#".repeat(30) : bar}] ${text}${final ? "\n" : ""}`);
    } else {
      process.stderr.write(`${text}\n`);
    }
  }
}

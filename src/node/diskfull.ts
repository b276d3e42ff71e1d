/**
 * Disk-full handling. When the log store refuses a Ready for lack of space
 * (DiskFullError), nothing of it was sent or applied: the core is rebuilt
 * from what is durable (entries past the durable log are lost with the old
 * core, and their writers learn it), writes are refused, reads go on. Every
 * retryMs a tick tries an empty durable write; once it succeeds, writes
 * resume by themselves.
 */
import { DiskFullError } from "../platform/sqlite.ts";
import type { HardState } from "../raft/index.ts";
import type { Logger } from "../util/log.ts";

export interface DiskFullStore {
  readonly path: string;
  hardState(): HardState;
  persist(w: { readonly entries: readonly never[]; readonly hardState: HardState }): void;
}

export interface DiskFullOptions {
  /** The log store (once open): its path (for messages) and an empty durable write to probe for space. */
  store(): DiskFullStore;
  readonly log: Pick<Logger, "error" | "info">;
  readonly counters: { diskFull: number };
  /** A full disk is probed again this long after it was last seen full. */
  readonly retryMs: number;
  /** Rebuilds the core from the durable log; writers of entries past it fail with `lost`. */
  rebuild(lost: DiskFullError): void;
  /** Space is back: the loop may run again. */
  schedule(): void;
}

export class DiskFull {
  private since: number | null = null;

  constructor(private readonly o: DiskFullOptions) {}

  /** Writes are stopped by a full disk now. */
  get full(): boolean {
    return this.since !== null;
  }

  /** The error writes are refused with while the disk is full, or null. */
  error(): DiskFullError | null {
    return this.since === null ? null : new DiskFullError(this.o.store().path);
  }

  /** The core handed out a Ready we could not persist (at `now`): rebuild it from what is durable. */
  onFull(detail: string, now: number, term: number | undefined): void {
    this.o.counters.diskFull++;
    if (this.since === null) this.o.log.error(`disk full: writes stop until space returns (${detail})`, { term });
    this.since = now;
    // Entries past the durable log were neither written nor sent: they are lost with the old core, so their writers learn it now.
    this.o.rebuild(new DiskFullError(this.o.store().path));
  }

  /** On a tick: if the disk has been full a while, try an empty durable write; writes resume if it succeeds. */
  maybeRetry(now: number): void {
    if (this.since === null || now - this.since <= this.o.retryMs) return;
    try {
      const store = this.o.store();
      store.persist({ entries: [], hardState: store.hardState() });
    } catch (e) {
      if (!(e instanceof DiskFullError)) throw e;
      this.since = now;
      return;
    }
    this.o.log.info("disk space is back: writes resume");
    this.since = null;
    this.o.schedule();
  }
}

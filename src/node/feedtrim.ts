/**
 * Change-feed retention: a change is trimmed only when it is beyond both
 * limits (the newest keepEntries changes and those younger than keepAgeMs
 * stay) and a checkpoint covers it (a follower that needs it can still get
 * it from the checkpoint). Runs on a tick, at most once per everyMs.
 */
import type { Manifest } from "../checkpoint/manifest.ts";
import { DiskFullError } from "../platform/sqlite.ts";
import type { CairnFsm } from "../statemachine/cairn.ts";
import type { Logger } from "../util/log.ts";

export interface FeedTrimOptions {
  readonly fsm: Pick<CairnFsm, "feedState" | "lastIndexBefore" | "trimFeed">;
  /** The newest checkpoint, if any. */
  newest(): Pick<Manifest, "feedLast"> | null;
  /**
   * Whether trimming waits for a newer checkpoint: the feed is past its
   * limits by more than a tenth of keepEntries beyond the newest one (the
   * checkpointer then builds one, paced), so that trimming goes on and a
   * reader told 410 can load a checkpoint covering what went.
   */
  waiting?(waiting: boolean): void;
  readonly keepEntries: number;
  readonly keepAgeMs: number;
  readonly everyMs: number;
  readonly log: Pick<Logger, "info" | "warn">;
}

export class FeedTrimmer {
  private nextAt = 0;

  constructor(private readonly o: FeedTrimOptions) {}

  maybeTrim(now: number): void {
    const o = this.o;
    if (now < this.nextAt) return;
    this.nextAt = now + o.everyMs;
    const newest = o.newest();
    const st = o.fsm.feedState();
    const byCount = st.last - o.keepEntries;
    const byAge = o.fsm.lastIndexBefore(st.ts - o.keepAgeMs);
    const covered = Math.max(newest?.feedLast ?? 0, st.first - 1);
    o.waiting?.(Math.min(byCount, byAge) - covered >= Math.max(1, Math.ceil(o.keepEntries / 10)));
    if (!newest) return;
    const cut = Math.min(byCount, byAge, newest.feedLast);
    if (cut < st.first) return;
    try {
      const r = o.fsm.trimFeed({ keepEntries: st.last - cut });
      if (r.deleted > 0) o.log.info(`feed retention: trimmed ${r.deleted} changes; the feed now starts at ${r.first}`);
    } catch (e) {
      // This runs on a tick, where a throw would take the node down; the next round tries again.
      if (!(e instanceof DiskFullError)) throw e;
      o.log.warn(`feed retention: not trimmed this time (${e.message})`);
    }
  }
}

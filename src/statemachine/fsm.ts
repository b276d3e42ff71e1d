/**
 * The embedder interface (hashicorp/raft FSM style) and the Applier that
 * feeds committed Raft entries to it.
 *
 * Exactly-once application rests on one rule: the FSM's changes and the
 * applied index are written in the SAME SQLite transaction. A crash before
 * COMMIT loses both, a crash after keeps both, so a restart neither repeats
 * nor skips an entry.
 */
import type { Db } from "../platform/sqlite.ts";
import type { ConfState, Entry } from "../raft/index.ts";
import type { AppliedState } from "../storage/store.ts";
import { assert } from "../util/assert.ts";

export interface FsmEntry {
  readonly index: number;
  readonly term: number;
  readonly data: Uint8Array;
}

/**
 * A deterministic state machine that keeps its state in the node's database.
 * apply() must give the same result and the same writes on every node for
 * the same entry: no clocks, no randomness, no I/O but `db`. It should
 * return an error result for a bad command rather than throw: a throw rolls
 * back the whole batch and the node retries it (which suits a full disk, not
 * a command that will always fail).
 */
export interface Fsm {
  /** Creates the FSM's tables if missing; runs inside a transaction at startup. */
  init(db: Db): void;
  /** Applies one command, inside the Applier's transaction. */
  apply(db: Db, entry: FsmEntry): unknown;
  /**
   * Optional: runs the applies of one batch (inside its transaction). The FSM may keep what it
   * reads in memory for the batch's length only (nothing else writes its tables meanwhile).
   */
  batch?<T>(fn: () => T): T;
}

export interface ApplierOptions {
  /** Where the applied index and configuration live (a RaftStore). */
  readonly store: AppliedState;
  readonly fsm: Fsm;
}

export class Applier {
  private readonly store: AppliedState;
  private readonly fsm: Fsm;

  constructor(opts: ApplierOptions) {
    this.store = opts.store;
    this.fsm = opts.fsm;
    const db = this.store.db;
    db.transaction(() => this.fsm.init(db));
  }

  appliedIndex(): number {
    return this.store.appliedIndex();
  }

  confState(): ConfState {
    return this.store.confState();
  }

  /**
   * Applies committed entries in ONE transaction and returns the FSM's result
   * for each normal, non-empty entry by Raft index. Conf entries and empty
   * entries (the leader's no-op) only advance the applied index. Entries at
   * or below the applied index are skipped, so a batch delivered again after a
   * restart is not applied twice. `conf` is the configuration after the batch
   * (Ready.confState), stored with the applied index.
   */
  apply(entries: readonly Entry[], conf?: ConfState): Map<number, unknown> {
    const results = new Map<number, unknown>();
    const applied = this.store.appliedIndex();
    const todo = entries.filter((e) => e.index > applied);
    if (todo.length === 0) return results;
    assert(todo[0]!.index === applied + 1, () => `apply gap: entry ${todo[0]!.index} after applied index ${applied}`);
    const db = this.store.db;
    const applyAll = () =>
      todo.forEach((e, k) => {
        assert(e.index === applied + 1 + k, () => `entries to apply not contiguous at ${e.index}`);
        if (e.kind === "normal" && e.data.byteLength > 0) {
          results.set(e.index, this.fsm.apply(db, { index: e.index, term: e.term, data: e.data }));
        }
      });
    db.transaction(() => {
      if (this.fsm.batch) this.fsm.batch(applyAll);
      else applyAll();
      this.store.saveApplied(todo[todo.length - 1]!.index, conf);
    });
    return results;
  }
}

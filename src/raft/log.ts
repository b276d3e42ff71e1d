/**
 * The core's view of the log: stable entries read from LogStorage, followed by
 * unstable ones (appended in memory, handed to the driver in a Ready, stable
 * once advance() confirms they were persisted). Modeled on etcd's raftLog.
 *
 * Invariants:
 *  - applied <= committed <= lastIndex()
 *  - committed entries are never truncated (assert in append)
 *  - unstable.offset === storage.lastIndex() + 1 after every advance(), with
 *    synchronous writes; with asynchronous ones, once every write handed out
 *    was reported persisted (entries in [offset, inProgress) are being written)
 */
import { assert } from "../util/assert.ts";
import { CompactedError, UnavailableError } from "./errors.ts";
import { limitSize, type LogStorage } from "./storage.ts";
import type { Entry, SnapshotMeta } from "./types.ts";

class Unstable {
  snapshot: SnapshotMeta | undefined;
  entries: Entry[] = [];
  /** Entries below this index were handed to the driver to write (asynchronous writes); >= offset. */
  inProgress: number;
  constructor(public offset: number) {
    this.inProgress = offset;
  }

  /** The entries not yet handed to the driver. */
  toWrite(): Entry[] {
    return this.inProgress === this.offset ? this.entries : this.entries.slice(this.inProgress - this.offset);
  }

  acceptInProgress(index: number): void {
    this.inProgress = Math.max(this.inProgress, index + 1);
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.index;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      return this.snapshot && this.snapshot.index === i ? this.snapshot.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]?.term;
  }

  stableTo(index: number, term: number): void {
    const t = this.maybeTerm(index);
    // Only when the term matches: a newer append may have replaced the entry.
    if (t === term && index >= this.offset) {
      this.entries = this.entries.slice(index + 1 - this.offset);
      this.offset = index + 1;
      this.inProgress = Math.max(this.inProgress, this.offset);
    }
  }

  stableSnapTo(index: number): void {
    if (this.snapshot?.index === index) this.snapshot = undefined;
  }

  restore(s: SnapshotMeta): void {
    this.offset = s.index + 1;
    this.inProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const after = ents[0]!.index;
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (after <= this.offset) {
      // Replaces every unstable entry (and possibly stable ones: the driver truncates).
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
    // Replaced entries that were being written are written again (the store truncates in write order).
    this.inProgress = Math.max(this.offset, Math.min(this.inProgress, after));
  }

  slice(lo: number, hi: number): Entry[] {
    assert(lo >= this.offset && hi <= this.offset + this.entries.length, () => `unstable slice [${lo},${hi}) outside [${this.offset},${this.offset + this.entries.length})`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

export class RaftLog {
  readonly unstable: Unstable;
  committed: number;
  applied: number;

  /** Asynchronous writes: only entries reported persisted are applied. */
  stableOnly = false;

  constructor(readonly storage: LogStorage, applied: number) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = Math.max(first - 1, applied);
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of entry i; throws CompactedError / UnavailableError outside [firstIndex-1, lastIndex]. */
  term(i: number): number {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    if (i + 1 < this.firstIndex()) throw new CompactedError(i, this.firstIndex());
    if (i > this.lastIndex()) throw new UnavailableError(i, this.lastIndex());
    return this.storage.term(i);
  }

  /** Term of entry i, or 0 when it is not in the log (compacted or beyond the end). */
  termOr0(i: number): number {
    try {
      return this.term(i);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return 0;
      throw e;
    }
  }

  matchTerm(i: number, term: number): boolean {
    return this.termOr0(i) === term && (term !== 0 || i === 0 || i + 1 === this.firstIndex());
  }

  /** The up-to-date check of the election restriction (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries (§5.3): if entry `index` has `logTerm`,
   * append what is new, truncating a conflicting suffix, and commit up to
   * min(commit, last new index). Returns the last new index, or undefined on a
   * mismatch.
   */
  maybeAppend(opts: { index: number; logTerm: number; commit: number; entries: readonly Entry[] }): number | undefined {
    if (!this.matchTerm(opts.index, opts.logTerm)) return undefined;
    const lastNew = opts.index + opts.entries.length;
    const ci = this.findConflict(opts.entries);
    if (ci !== 0) {
      assert(ci > this.committed, () => `entry ${ci} conflicts with committed entry (committed ${this.committed})`);
      this.append(opts.entries.slice(ci - (opts.index + 1)));
    }
    this.commitTo(Math.min(opts.commit, lastNew));
    return lastNew;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    assert(after >= this.committed, () => `append after ${after} would truncate committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** First index whose term differs from ours (0 if none): new or conflicting entries start there. */
  private findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast backtracking (thesis §5.3 optimisation as in etcd): the largest index
   * <= `index` whose term is <= `term`, with that term.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = index; i > 0; i--) {
      let t: number;
      try {
        t = this.term(i);
      } catch (e) {
        if (e instanceof CompactedError || e instanceof UnavailableError) return { index: i, term: 0 };
        throw e;
      }
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  unstableEntries(): readonly Entry[] {
    return this.unstable.entries;
  }

  /** The unstable entries not yet handed to the driver (all of them, with synchronous writes). */
  entriesToWrite(): readonly Entry[] {
    return this.unstable.toWrite();
  }

  /** Asynchronous writes: the entries up to `index` are being written (handed out in a Ready). */
  acceptInProgress(index: number): void {
    this.unstable.acceptInProgress(index);
  }

  /**
   * The last entry that may be applied: committed, and (asynchronous writes) durable here, or a
   * restarted node's state machine could be ahead of its log.
   */
  private appliableTo(): number {
    return this.stableOnly ? Math.min(this.committed, this.unstable.offset - 1) : this.committed;
  }

  hasNextCommittedEnts(): boolean {
    return this.appliableTo() > this.applied && !this.unstable.snapshot;
  }

  nextCommittedEnts(maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEnts()) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    return this.slice(lo, this.appliableTo() + 1, maxBytes);
  }

  /** The last index that is durable here (asynchronous writes: reported persisted). */
  stableLastIndex(): number {
    return this.unstable.offset - 1;
  }

  /** The newest snapshot, pending (unstable) or stored. */
  snapshot(): SnapshotMeta {
    return this.unstable.snapshot ?? this.storage.snapshotMeta();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), () => `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Commits `maxIndex` only if that entry is of `term` (§5.4.2: only current-term entries count). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOr0(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    assert(index <= this.committed && index >= this.applied, () => `applied ${index} outside [${this.applied}, ${this.committed}]`);
    this.applied = index;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }

  restore(s: SnapshotMeta): void {
    this.committed = s.index;
    this.unstable.restore(s);
  }

  /** Entries from `i` to the end, at most maxBytes. */
  entriesFrom(i: number, maxBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxBytes);
  }

  /** Entries in [lo, hi), at most maxBytes (at least one). Throws CompactedError below firstIndex. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo, first);
    assert(hi <= this.lastIndex() + 1, () => `slice [${lo},${hi}) beyond last index ${this.lastIndex()}`);
    const off = this.unstable.offset;
    let ents: Entry[] = [];
    if (lo < off) {
      ents = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      // Storage cut the batch short for size: stop here.
      if (ents.length < Math.min(hi, off) - lo) return ents;
    }
    if (hi > off) ents = ents.concat(this.unstable.slice(Math.max(lo, off), hi));
    return limitSize(ents, maxBytes);
  }
}

/**
 * The read side of stable storage as the core sees it (like etcd's
 * raft.Storage). The driver writes; the core only reads, synchronously.
 * Implementations: MemoryStorage here (simulator, tests), SQLite in
 * src/storage/.
 */
import { assert } from "../util/assert.ts";
import { CompactedError, UnavailableError } from "./errors.ts";
import {
  EMPTY_CONF,
  EMPTY_HARD_STATE,
  entryBytes,
  type ConfState,
  type Entry,
  type HardState,
  type SnapshotMeta,
} from "./types.ts";

export interface InitialState {
  readonly hardState: HardState;
  /** The configuration as of the last applied entry (or snapshot). */
  readonly confState: ConfState;
}

export interface LogStorage {
  initialState(): InitialState;
  /** Entries in [lo, hi), at most maxBytes (but always at least one if any). */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i; valid for firstIndex()-1 <= i <= lastIndex(). */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  /** The newest snapshot (index 0 when there is none). */
  snapshotMeta(): SnapshotMeta;
}

/** Cuts a list of entries to maxBytes, keeping at least one. */
export function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entryBytes(ents[0]!);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entryBytes(ents[n]!);
    if (size > maxBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

/**
 * In-memory storage. ents[0] is a dummy holding the snapshot's index and term,
 * so that term(firstIndex-1) is always answerable.
 */
export class MemoryStorage implements LogStorage {
  private hard: HardState = EMPTY_HARD_STATE;
  private conf: ConfState = EMPTY_CONF;
  private snap: SnapshotMeta = { index: 0, term: 0, conf: EMPTY_CONF };
  private ents: Entry[] = [{ index: 0, term: 0, kind: "normal", data: new Uint8Array() }];

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.conf };
  }

  setHardState(hs: HardState): void {
    this.hard = hs;
  }

  setConfState(cs: ConfState): void {
    this.conf = cs;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  term(i: number): number {
    const offset = this.ents[0]!.index;
    if (i < offset) throw new CompactedError(i, this.firstIndex());
    if (i - offset >= this.ents.length) throw new UnavailableError(i, this.lastIndex());
    return this.ents[i - offset]!.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new CompactedError(lo, this.firstIndex());
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1, this.lastIndex());
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }

  snapshotMeta(): SnapshotMeta {
    return this.snap;
  }

  /** Replaces everything with the snapshot (a follower installing one). */
  applySnapshot(s: SnapshotMeta): void {
    assert(s.index >= this.snap.index, () => `snapshot ${s.index} older than ${this.snap.index}`);
    this.snap = s;
    this.conf = s.conf;
    this.ents = [{ index: s.index, term: s.term, kind: "normal", data: new Uint8Array() }];
  }

  /** Records a snapshot taken locally at `index` (which must be in the log). */
  createSnapshot(index: number, conf: ConfState): SnapshotMeta {
    assert(index > this.snap.index, () => `snapshot at ${index} not newer than ${this.snap.index}`);
    assert(index <= this.lastIndex(), () => `snapshot at ${index} beyond last index ${this.lastIndex()}`);
    this.snap = { index, term: this.term(index), conf };
    return this.snap;
  }

  /** Drops entries up to and including `index` (which must be <= the snapshot). */
  compact(index: number): void {
    const offset = this.ents[0]!.index;
    if (index <= offset) return;
    assert(index <= this.lastIndex(), () => `compact ${index} beyond last index ${this.lastIndex()}`);
    const dummy = this.ents[index - offset]!;
    this.ents = [{ index: dummy.index, term: dummy.term, kind: "normal", data: new Uint8Array() }, ...this.ents.slice(index - offset + 1)];
  }

  /** Appends, truncating any existing suffix from ents[0].index on. */
  append(ents: readonly Entry[]): void {
    if (ents.length === 0) return;
    const first = this.firstIndex();
    const last = ents[ents.length - 1]!.index;
    if (last < first) return; // all compacted already
    const fresh = first > ents[0]!.index ? ents.slice(first - ents[0]!.index) : ents;
    const offset = fresh[0]!.index - this.ents[0]!.index;
    assert(offset <= this.ents.length, () => `gap: appending ${fresh[0]!.index} after last ${this.lastIndex()}`);
    this.ents = this.ents.slice(0, offset).concat(fresh);
  }

  /** A deep-enough copy for the simulator's crash model. */
  clone(): MemoryStorage {
    const c = new MemoryStorage();
    c.hard = this.hard;
    c.conf = this.conf;
    c.snap = this.snap;
    c.ents = this.ents.slice();
    return c;
  }
}

/**
 * RaftLog: stable entries from storage followed by unstable ones; the
 * follower side of AppendEntries (§5.3), the up-to-date check (§5.4.1), the
 * conflict hint used for fast backtracking (§5.3), commit and apply
 * bookkeeping, and compaction (§7). Property tests compare it with a plain
 * array model.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { CompactedError, MemoryStorage, type Entry } from "../../src/raft/index.ts";
import { RaftLog } from "../../src/raft/log.ts";
import { AssertionError } from "../../src/util/assert.ts";

const ent = (index: number, term: number): Entry => ({ index, term, kind: "normal", data: new Uint8Array([index & 0xff]) });
const ents = (from: number, terms: number[]): Entry[] => terms.map((t, i) => ent(from + i, t));
const big = Number.MAX_SAFE_INTEGER;

/** A log whose entries 1..n have `terms`, the first `stable` of them in storage. */
function logWith(terms: number[], stable = terms.length): { log: RaftLog; storage: MemoryStorage } {
  const storage = new MemoryStorage();
  storage.append(ents(1, terms.slice(0, stable)));
  const log = new RaftLog(storage, 0);
  if (stable < terms.length) log.append(ents(stable + 1, terms.slice(stable)));
  return { log, storage };
}

function persist(log: RaftLog, storage: MemoryStorage): void {
  const u = log.unstableEntries();
  const last = u[u.length - 1];
  if (!last) return;
  storage.append(u);
  log.stableTo(last.index, last.term);
}

const termsOf = (log: RaftLog) => log.slice(log.firstIndex(), log.lastIndex() + 1, big).map((e) => e.term);

describe("RaftLog", () => {
  // §5.3 / Figure 2: log[] is read across what is on stable storage and what is not yet.
  test("entries span storage and the unstable tail; term() answers for both", () => {
    const { log } = logWith([1, 1, 2, 2, 3], 3);
    expect([log.firstIndex(), log.lastIndex(), log.lastTerm()]).toEqual([1, 5, 3]);
    expect([0, 1, 2, 3, 4, 5].map((i) => log.term(i))).toEqual([0, 1, 1, 2, 2, 3]);
    expect(log.slice(2, 6, big).map((e) => e.index)).toEqual([2, 3, 4, 5]);
    expect(log.unstableEntries().map((e) => e.index)).toEqual([4, 5]);
  });

  // thesis §10.2.2: batches are bounded; an entry larger than the limit still goes alone.
  test("slice() honours maxBytes across the storage/unstable boundary, but returns at least one entry", () => {
    const { log } = logWith([1, 1, 1, 1, 1, 1], 3);
    // Each entry counts 1 + 24 bytes.
    expect(log.slice(1, 7, 60).map((e) => e.index)).toEqual([1, 2]);
    expect(log.slice(3, 7, 60).map((e) => e.index)).toEqual([3, 4]);
    expect(log.slice(5, 7, 1).map((e) => e.index)).toEqual([5]);
  });

  const upToDate: [number, number, boolean][] = [
    [5, 3, true],
    [9, 3, true],
    [4, 3, false],
    [9, 2, false],
    [1, 4, true],
  ];
  for (const [li, lt, want] of upToDate) {
    test(`§5.4.1: a candidate with last entry ${li}/${lt} is ${want ? "" : "not "}as up to date as a log ending in 5/3`, () => {
      expect(logWith([1, 1, 2, 2, 3]).log.isUpToDate(li, lt)).toBe(want);
    });
  }

  const hints: [number, number, [number, number]][] = [
    [5, 3, [5, 3]],
    [5, 2, [4, 2]],
    [5, 1, [2, 1]],
    [3, 5, [3, 2]],
    [5, 0, [0, 0]],
  ];
  for (const [index, term, want] of hints) {
    test(`§5.3 fast backtracking: findConflictByTerm(${index}, ${term}) on terms [1,1,2,2,3] is ${want}`, () => {
      expect(logWith([1, 1, 2, 2, 3]).log.findConflictByTerm(index, term)).toEqual({ index: want[0], term: want[1] });
    });
  }

  test("§5.3: maybeAppend refuses a mismatching previous entry and leaves the log alone", () => {
    const { log } = logWith([1, 1, 2]);
    expect(log.maybeAppend({ index: 3, logTerm: 1, commit: 3, entries: ents(4, [3]) })).toBeUndefined();
    expect(log.maybeAppend({ index: 5, logTerm: 2, commit: 3, entries: [] })).toBeUndefined();
    expect(termsOf(log)).toEqual([1, 1, 2]);
    expect(log.committed).toBe(0);
  });

  test("§5.3: maybeAppend truncates from the first conflict and commits min(commit, last new)", () => {
    const { log, storage } = logWith([1, 1, 2, 2, 2]);
    expect(log.maybeAppend({ index: 2, logTerm: 1, commit: 9, entries: ents(3, [2, 3]) })).toBe(4);
    expect(termsOf(log)).toEqual([1, 1, 2, 3]);
    expect(log.committed).toBe(4);
    persist(log, storage);
    expect(storage.lastIndex()).toBe(4);
    expect(log.unstable.offset).toBe(5);
  });

  test("§5.3: a committed entry is never truncated: such an append fails an assertion", () => {
    const { log } = logWith([1, 1, 2]);
    log.commitTo(3);
    expect(() => log.maybeAppend({ index: 1, logTerm: 1, commit: 3, entries: ents(2, [5]) })).toThrow(AssertionError);
    expect(() => log.append(ents(3, [9]))).toThrow(AssertionError);
    expect(termsOf(log)).toEqual([1, 1, 2]);
  });

  // Figure 2 (§5): commitIndex and lastApplied increase monotonically, lastApplied <= commitIndex.
  test("commitTo never goes back and never beyond the last index; appliedTo stays within [applied, committed]", () => {
    const { log } = logWith([1, 1, 1]);
    log.commitTo(2);
    log.commitTo(1);
    expect(log.committed).toBe(2);
    expect(() => log.commitTo(4)).toThrow(AssertionError);
    expect(log.nextCommittedEnts(big).map((e) => e.index)).toEqual([1, 2]);
    log.appliedTo(2);
    expect(log.hasNextCommittedEnts()).toBe(false);
    expect(() => log.appliedTo(3)).toThrow(AssertionError);
    expect(() => log.appliedTo(1)).toThrow(AssertionError);
  });

  test("§5.4.2: maybeCommit commits only an entry of the given term", () => {
    const { log } = logWith([1, 1, 2, 3]);
    expect(log.maybeCommit(3, 3)).toBe(false);
    expect(log.committed).toBe(0);
    expect(log.maybeCommit(4, 3)).toBe(true);
    expect(log.committed).toBe(4);
  });

  // §5.3: an entry replaced by a conflicting append must not be reported stable (Figure 2: persist before responding).
  test("stableTo ignores an acknowledgement for an entry that was replaced meanwhile", () => {
    const { log } = logWith([1, 1], 1);
    log.append(ents(2, [2])); // replaces unstable 2/1 with 2/2
    log.stableTo(2, 1);
    expect(log.unstableEntries().map((e) => `${e.index}/${e.term}`)).toEqual(["2/2"]);
    log.stableTo(2, 2);
    expect(log.unstableEntries()).toEqual([]);
  });

  test("§7: after compaction, term() still answers for the snapshot index and throws CompactedError below it", () => {
    const { log, storage } = logWith([1, 1, 2, 2, 3]);
    storage.createSnapshot(3, { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] });
    storage.compact(3);
    expect(log.firstIndex()).toBe(4);
    expect(log.term(3)).toBe(2);
    expect(() => log.term(2)).toThrow(CompactedError);
    expect(() => log.slice(3, 5, big)).toThrow(CompactedError);
    expect(log.findConflictByTerm(5, 1)).toEqual({ index: 2, term: 0 });
  });

  test("§7: restore() replaces the log with a snapshot and commits up to it", () => {
    const { log, storage } = logWith([1, 1, 2]);
    log.restore({ index: 10, term: 4, conf: { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] } });
    expect([log.firstIndex(), log.lastIndex(), log.term(10), log.committed]).toEqual([11, 10, 4, 10]);
    expect(log.hasPendingSnapshot()).toBe(true);
    expect(log.hasNextCommittedEnts()).toBe(false); // nothing to apply until the snapshot is installed
    storage.applySnapshot(log.snapshot());
    log.stableSnapTo(10);
    expect(log.hasPendingSnapshot()).toBe(false);
    expect([log.firstIndex(), log.lastIndex()]).toEqual([11, 10]);
  });
});

/**
 * The model: terms[i] is the term of entry i (terms[0] = 0 stands for the
 * entry before the log), entries below `first` are compacted.
 */
interface Model {
  terms: number[];
  first: number;
  committed: number;
  applied: number;
}

type Op =
  /** prev and commit are offsets from the follower's commit index (a leader's commit runs a little ahead). */
  | { k: "append"; prev: number; match: boolean; terms: number[]; commit: number }
  | { k: "persist" }
  | { k: "commit"; by: number }
  | { k: "apply" }
  | { k: "compact"; at: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant<"append">("append"), prev: fc.nat(8), match: fc.boolean(), terms: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 5 }), commit: fc.nat(2) }) },
  { weight: 3, arbitrary: fc.constant<Op>({ k: "persist" }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant<"commit">("commit"), by: fc.nat(3) }) },
  { weight: 2, arbitrary: fc.constant<Op>({ k: "apply" }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant<"compact">("compact"), at: fc.nat(5) }) },
);

/** What the generated runs covered, so that the property cannot pass by exercising nothing. */
const seen = { truncatedStable: 0, compactions: 0, rejected: 0 };

/** Applies `op` to the model and the real log. */
function run(op: Op, m: Model, log: RaftLog, storage: MemoryStorage): void {
  const last = m.terms.length - 1;
  switch (op.k) {
    case "append": {
      // As handleAppendEntries: appends below the commit index are answered without maybeAppend.
      const prev = m.committed + (op.prev % (last - m.committed + 2));
      const prevTerm = prev <= last ? m.terms[prev]! + (op.match ? 0 : 1) : 1;
      // New entries' terms never go below prevTerm (a leader's log is sorted by term).
      let t = Math.max(prevTerm, 1); // real entries have term >= 1
      const newTerms = op.terms.map((d) => (t += d));
      const storedLast = storage.lastIndex();
      const commit = m.committed + op.commit;
      const res = log.maybeAppend({ index: prev, logTerm: prevTerm, commit, entries: ents(prev + 1, newTerms) });
      if (prev > last || m.terms[prev] !== prevTerm) {
        expect(res).toBeUndefined();
        seen.rejected++;
        return;
      }
      const lastNew = prev + newTerms.length;
      expect(res).toBe(lastNew);
      newTerms.forEach((nt, i) => {
        const idx = prev + 1 + i;
        if (idx <= m.terms.length - 1 && m.terms[idx] === nt) return;
        // A conflict (or new entry) from idx on: the model must not have committed there.
        expect(idx).toBeGreaterThan(m.committed);
        if (idx <= storedLast && idx <= m.terms.length - 1) seen.truncatedStable++;
        m.terms = m.terms.slice(0, idx);
        m.terms.push(nt);
      });
      m.committed = Math.max(m.committed, Math.min(commit, lastNew));
      return;
    }
    case "persist":
      persist(log, storage);
      expect(log.unstable.offset).toBe(storage.lastIndex() + 1);
      return;
    case "commit": {
      const to = Math.min(m.committed + op.by, last);
      log.commitTo(to);
      m.committed = Math.max(m.committed, to);
      return;
    }
    case "apply": {
      // The Ready contract: entries handed out are persisted before committed ones are applied.
      persist(log, storage);
      const got = log.nextCommittedEnts(big).map((e) => e.index);
      const want: number[] = [];
      for (let i = Math.max(m.applied + 1, m.first); i <= m.committed; i++) want.push(i);
      expect(got).toEqual(want);
      if (got.length > 0) log.appliedTo(got[got.length - 1]!);
      m.applied = m.committed;
      return;
    }
    case "compact": {
      // The driver compacts only what it has persisted and applied.
      const at = Math.min(m.first - 1 + op.at, m.applied, storage.lastIndex());
      if (at < m.first) return;
      storage.createSnapshot(at, { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] });
      storage.compact(at);
      m.first = at + 1;
      seen.compactions++;
      return;
    }
  }
}

function check(m: Model, log: RaftLog): void {
  const last = m.terms.length - 1;
  expect(log.lastIndex()).toBe(last);
  expect(log.firstIndex()).toBe(m.first);
  expect(log.committed).toBe(m.committed);
  for (let i = m.first - 1; i <= last; i++) expect(log.term(i)).toBe(m.terms[i]!);
  if (m.first - 2 >= 0) expect(() => log.term(m.first - 2)).toThrow(CompactedError);
  expect(log.slice(m.first, last + 1, big).map((e) => [e.index, e.term])).toEqual(m.terms.slice(m.first).map((t, i) => [m.first + i, t]));
  // The follower's answer to a rejection points at an entry it really has, no later than asked.
  if (last >= m.first) {
    const h = log.findConflictByTerm(last, m.terms[last]!);
    expect(h).toEqual({ index: last, term: m.terms[last]! });
  }
}

describe("RaftLog against a model (property)", () => {
  test("§5.3: appends, persistence, commits, applies and compaction agree with a plain array", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 20, maxLength: 80, size: "max" }), (ops) => {
        const storage = new MemoryStorage();
        const log = new RaftLog(storage, 0);
        const m: Model = { terms: [0], first: 1, committed: 0, applied: 0 };
        for (const op of ops) {
          run(op, m, log, storage);
          check(m, log);
        }
        // Whatever is persisted is what the model holds.
        persist(log, storage);
        expect(storage.lastIndex()).toBe(m.terms.length - 1);
      }),
      { seed: 401, numRuns: 400 },
    );
    expect(seen.truncatedStable).toBeGreaterThan(50);
    expect(seen.compactions).toBeGreaterThan(50);
    expect(seen.rejected).toBeGreaterThan(50);
  });

  test("§5.3: findConflictByTerm returns the last entry at or below index with a term at or below term (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 30 }), fc.nat(40), fc.nat(8), (steps, rawIndex, term) => {
        let t = 1;
        const terms = steps.map((d) => (t += d));
        const { log } = logWith(terms);
        const index = Math.min(rawIndex, terms.length);
        const h = log.findConflictByTerm(index, term);
        expect(h.index).toBeLessThanOrEqual(index);
        expect(h.term).toBe(log.term(h.index));
        expect(h.term).toBeLessThanOrEqual(term);
        for (let i = h.index + 1; i <= index; i++) expect(log.term(i)).toBeGreaterThan(term);
      }),
      { seed: 402, numRuns: 300 },
    );
  });
});

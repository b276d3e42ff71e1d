/**
 * RaftStore against the reference MemoryStorage: random appends (with
 * truncation), snapshots, compactions, snapshot installs and reopens must
 * leave both answering every LogStorage question alike.
 */
import { afterEach, expect, test } from "bun:test";
import fc from "fast-check";
import { MemoryStorage } from "../../src/raft/storage.ts";
import type { ConfState, Entry } from "../../src/raft/types.ts";
import { RaftStore } from "../../src/storage/store.ts";
import { TempDirs } from "../platform/testutil.ts";

const tmp = new TempDirs();
afterEach(() => tmp.cleanup());

const CONF: ConfState = { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] };

type Op =
  | { kind: "append"; back: number; count: number; term: number }
  | { kind: "compact"; back: number }
  | { kind: "install"; ahead: number; term: number }
  | { kind: "reopen" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("append" as const), back: fc.nat(4), count: fc.integer({ min: 1, max: 6 }), term: fc.integer({ min: 1, max: 9 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("compact" as const), back: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("install" as const), ahead: fc.integer({ min: 0, max: 5 }), term: fc.integer({ min: 1, max: 9 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "reopen" as const }) },
);

function makeEntries(from: number, count: number, term: number): Entry[] {
  return Array.from({ length: count }, (_, k) => ({ index: from + k, term, kind: "normal" as const, data: new Uint8Array([from + k, term]) }));
}

function step(m: MemoryStorage, s: RaftStore, op: Op, dir: string): RaftStore {
  switch (op.kind) {
    case "append": {
      const from = Math.max(m.firstIndex(), m.lastIndex() + 1 - op.back);
      const ents = makeEntries(from, op.count, op.term);
      m.append(ents);
      s.persist({ entries: ents });
      return s;
    }
    case "compact": {
      const index = m.lastIndex() - op.back;
      if (index <= m.snapshotMeta().index || index < m.firstIndex()) return s;
      s.db.transaction(() => s.saveApplied(Math.max(index, s.appliedIndex())));
      m.createSnapshot(index, CONF);
      s.createSnapshot(index, CONF);
      m.compact(index);
      s.compact(index);
      return s;
    }
    case "install": {
      const meta = { index: m.lastIndex() + op.ahead, term: op.term, conf: CONF };
      if (meta.index < m.snapshotMeta().index) return s;
      m.applySnapshot(meta);
      s.installSnapshot(meta);
      return s;
    }
    case "reopen":
      s.close();
      return RaftStore.open({ dir, termCacheLengthMax: 3, entryCacheLengthMax: 2 });
  }
}

function same(m: MemoryStorage, s: RaftStore): void {
  expect([s.firstIndex(), s.lastIndex()]).toEqual([m.firstIndex(), m.lastIndex()]);
  expect(s.snapshotMeta()).toEqual(m.snapshotMeta());
  for (let i = m.firstIndex() - 1; i <= m.lastIndex(); i++) expect(s.term(i)).toBe(m.term(i));
  if (m.lastIndex() >= m.firstIndex()) {
    expect(s.entries(m.firstIndex(), m.lastIndex() + 1, Infinity)).toEqual(m.entries(m.firstIndex(), m.lastIndex() + 1, Infinity));
    expect(s.entries(m.firstIndex(), m.lastIndex() + 1, 60)).toEqual(m.entries(m.firstIndex(), m.lastIndex() + 1, 60));
  }
}

test("RaftStore answers like MemoryStorage after any sequence of writes and reopens", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      const dir = tmp.make();
      const m = new MemoryStorage();
      let s = RaftStore.open({ dir, termCacheLengthMax: 3, entryCacheLengthMax: 2 });
      try {
        for (const op of ops) {
          s = step(m, s, op, dir);
          same(m, s);
        }
      } finally {
        s.close();
      }
    }),
    { numRuns: 150 },
  );
}, 60_000);

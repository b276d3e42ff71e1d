/**
 * The compaction and build policy (pure): when the log is compacted and how
 * far, what holds it, and how builds the node starts on its own are paced.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { buildDue, compactionTarget, nextPacedBuildAt, type CompactionInput } from "../../src/checkpoint/policy.ts";

const base: CompactionInput = { applied: 0, start: 0, trailingEntries: 1000, everyEntries: 10_000, logBytes: 0, logBytesMax: 0, holds: [], holdEntriesMax: 200_000 };

test("the log is compacted once it holds everyEntries beyond the trailing ones, down to the applied index less the trailing entries", () => {
  expect(compactionTarget({ ...base, applied: 10_999 })).toBeNull();
  expect(compactionTarget({ ...base, applied: 11_000 })).toBe(10_000);
  // Whatever the size of the state: the decision looks at log indexes only.
  expect(compactionTarget({ ...base, applied: 1_000_000, start: 980_000 })).toBe(999_000);
  expect(compactionTarget({ ...base, applied: 1_000_000, start: 995_000 })).toBeNull();
  // Off by count: never by count.
  expect(compactionTarget({ ...base, everyEntries: 0, applied: 1_000_000 })).toBeNull();
});

test("past logBytesMax the log is compacted down to the holds, the trailing entries too", () => {
  expect(compactionTarget({ ...base, everyEntries: 0, applied: 500, logBytes: 300 << 20, logBytesMax: 256 << 20 })).toBe(500);
  expect(compactionTarget({ ...base, everyEntries: 0, applied: 500, logBytes: 300 << 20, logBytesMax: 256 << 20, holds: [420] })).toBe(420);
  expect(compactionTarget({ ...base, everyEntries: 0, applied: 500, logBytes: 100 << 20, logBytesMax: 256 << 20 })).toBeNull();
});

test("live followers, offers and a build in progress hold the log, within holdEntriesMax below the applied index", () => {
  const at = { ...base, applied: 50_000 };
  expect(compactionTarget({ ...at, holds: [30_000] })).toBe(30_000);
  expect(compactionTarget({ ...at, holds: [30_000, 12_000, Infinity] })).toBe(12_000);
  // A hold at or below the compaction point: nothing to do.
  expect(compactionTarget({ ...at, start: 12_000, holds: [12_000] })).toBeNull();
  // A follower far behind does not keep the log without bound.
  expect(compactionTarget({ ...at, applied: 500_000, holds: [3] })).toBe(300_000);
});

test("property: the target is above the start, at most the applied index, never below the holds unless holdEntriesMax forces it", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.integer({ min: 0, max: 5000 }),
      fc.integer({ min: 0, max: 20_000 }),
      fc.array(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 4 }),
      fc.integer({ min: 1, max: 300_000 }),
      (applied, startRaw, trailingEntries, everyEntries, holds, holdEntriesMax) => {
        const start = Math.min(startRaw, applied);
        const t = compactionTarget({ ...base, applied, start, trailingEntries, everyEntries, holds, holdEntriesMax });
        if (t === null) return;
        expect(t).toBeGreaterThan(start);
        expect(t).toBeLessThanOrEqual(applied);
        expect(t).toBeLessThanOrEqual(Math.max(applied - trailingEntries, applied - holdEntriesMax));
        const hold = Math.min(Infinity, ...holds);
        if (t > hold) expect(t).toBe(applied - holdEntriesMax);
      },
    ),
  );
});

test("builds the node starts on its own take at most diskShare of the time", () => {
  expect(nextPacedBuildAt({ now: 0, lastEndAt: -Infinity, lastBuildMs: 0, diskShare: 0.05 })).toBe(-Infinity);
  // A 9 s build at 5%: the next waits 171 s after its end (9 s of every 180 s).
  expect(nextPacedBuildAt({ now: 0, lastEndAt: 100_000, lastBuildMs: 9000, diskShare: 0.05 })).toBe(100_000 + 171_000);
  expect(nextPacedBuildAt({ now: 0, lastEndAt: 100_000, lastBuildMs: 9000, diskShare: 1 })).toBe(100_000);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100_000 }), fc.double({ min: 0.01, max: 1, noNaN: true }), (d, share) => {
      const next = nextPacedBuildAt({ now: 0, lastEndAt: d, lastBuildMs: d, diskShare: share });
      // The build ran over [0, d]; from its start to the next one's, building took d of next.
      expect(d / next).toBeLessThanOrEqual(share + 1e-9);
    }),
  );
});

test("a build is due by count, by age, or when feed retention waits; never with nothing new applied", () => {
  const b = { applied: 100, newestIndex: 0, ageMs: 0, everyEntries: 0, everyMs: 0, feedWaiting: false };
  expect(buildDue(b)).toBeNull();
  expect(buildDue({ ...b, everyEntries: 100 })).toContain("100 entries applied");
  expect(buildDue({ ...b, everyEntries: 101 })).toBeNull();
  expect(buildDue({ ...b, everyMs: 600_000, ageMs: 600_000 })).toContain("older than");
  expect(buildDue({ ...b, feedWaiting: true })).toContain("feed retention");
  expect(buildDue({ ...b, newestIndex: 100, feedWaiting: true, everyEntries: 1, everyMs: 1, ageMs: 10 })).toBeNull();
});

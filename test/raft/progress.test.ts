/**
 * The leader's per-follower state (nextIndex/matchIndex, §5.3) with the flow
 * control of thesis §10.2.2: Inflights (the pipelining window) and the
 * probe / replicate / snapshot states of Progress.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Inflights, Progress } from "../../src/raft/progress.ts";
import { AssertionError } from "../../src/util/assert.ts";

function progress(o: { match?: number; next?: number; inflightMax?: number } = {}): Progress {
  const p = new Progress({ next: o.next ?? 1, inflightMax: o.inflightMax ?? 4, isLearner: false });
  p.match = o.match ?? 0;
  return p;
}

describe("Inflights (thesis §10.2.2)", () => {
  test("thesis §10.2.2: the window fills up to sizeMax and frees acknowledged appends in order", () => {
    const w = new Inflights(3);
    w.add(2);
    w.add(5);
    expect(w.full()).toBe(false);
    w.add(9);
    expect(w.full()).toBe(true);
    expect(() => w.add(10)).toThrow(AssertionError);
    w.freeLE(4);
    expect(w.count).toBe(2);
    w.freeLE(5);
    expect(w.count).toBe(1);
    w.freeLE(100);
    expect(w.count).toBe(0);
    w.add(101);
    w.reset();
    expect(w.count).toBe(0);
  });

  // thesis §10.2.2: pipelined appends are tracked in log order.
  test("appends must be added in increasing order, and the window must be positive", () => {
    const w = new Inflights(4);
    w.add(5);
    expect(() => w.add(5)).toThrow(AssertionError);
    expect(() => new Inflights(0)).toThrow(AssertionError);
  });

  test("thesis §10.2.2: Inflights behaves like a bounded FIFO of last indexes (property)", () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant<"add">("add"), n: fc.integer({ min: 1, max: 5 }) }),
      fc.record({ k: fc.constant<"free">("free"), n: fc.integer({ min: -3, max: 10 }) }),
      fc.record({ k: fc.constant<"reset">("reset"), n: fc.constant(0) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 300 }), (size, ops) => {
        const w = new Inflights(size);
        let model: number[] = [];
        let last = 0;
        for (const o of ops) {
          if (o.k === "add") {
            last += o.n;
            if (model.length >= size) {
              expect(() => w.add(last)).toThrow(AssertionError);
            } else {
              w.add(last);
              model.push(last);
            }
          } else if (o.k === "free") {
            const upTo = (model[0] ?? last) + o.n;
            w.freeLE(upTo);
            model = model.filter((x) => x > upTo);
          } else {
            w.reset();
            model = [];
          }
          expect(w.count).toBe(model.length);
          expect(w.full()).toBe(model.length >= size);
        }
      }),
      { seed: 301, numRuns: 200 },
    );
  });
});

describe("Progress states (§5.3, thesis §10.2.2)", () => {
  test("thesis §10.2.2: in replicate state sending advances next optimistically and fills the window", () => {
    const p = progress({ match: 5, next: 6, inflightMax: 2 });
    p.becomeReplicate();
    p.sentEntries(3);
    expect(p.next).toBe(9);
    expect(p.isPaused()).toBe(false);
    p.sentEntries(1);
    expect(p.next).toBe(10);
    expect(p.isPaused()).toBe(true); // window of 2 full
    expect(p.maybeUpdate(8)).toBe(true);
    p.inflights.freeLE(8);
    expect(p.match).toBe(8);
    expect(p.next).toBe(10);
    expect(p.isPaused()).toBe(false);
  });

  test("thesis §10.2.2: in probe state one append pauses sending until an answer", () => {
    const p = progress({ match: 3, next: 7 });
    p.becomeProbe();
    expect(p.next).toBe(4);
    p.sentEntries(5);
    expect(p.next).toBe(4); // not advanced: the follower's log is unknown
    expect(p.isPaused()).toBe(true);
    expect(p.maybeUpdate(6)).toBe(true);
    expect(p.isPaused()).toBe(false);
    expect(p.next).toBe(7);
  });

  test("§5.3: a rejection in replicate state counts only above match and restarts from match+1", () => {
    const p = progress({ match: 5, next: 6 });
    p.becomeReplicate();
    p.sentEntries(4);
    expect(p.maybeDecrTo(5, 0)).toBe(false); // stale: 5 was acknowledged
    expect(p.next).toBe(10);
    expect(p.maybeDecrTo(8, 2)).toBe(true);
    expect(p.next).toBe(6); // the hint is not used in replicate state
  });

  test("§5.3: a rejection in probe state counts only for the newest probe, and follows the hint down to match+1", () => {
    const p = progress({ match: 2, next: 10 });
    p.sentEntries(1);
    expect(p.maybeDecrTo(7, 3)).toBe(false); // an older probe's rejection
    expect(p.isPaused()).toBe(true);
    expect(p.maybeDecrTo(9, 4)).toBe(true);
    expect(p.next).toBe(5);
    expect(p.isPaused()).toBe(false);
    p.sentEntries(1);
    expect(p.maybeDecrTo(4, 0)).toBe(true);
    expect(p.next).toBe(3); // never below match+1
  });

  test("§7: the snapshot state pauses sending; leaving it probes after the snapshot (or after match on failure)", () => {
    const p = progress({ match: 2, next: 3 });
    p.becomeSnapshot(20);
    expect(p.isPaused()).toBe(true);
    expect(() => p.sentEntries(1)).toThrow(AssertionError);
    p.becomeProbe();
    expect(p.state).toBe("probe");
    expect(p.next).toBe(21);

    const q = progress({ match: 2, next: 3 });
    q.becomeSnapshot(20);
    q.pendingSnapshot = 0; // what reportSnapshot(failure) does
    q.becomeProbe();
    expect(q.next).toBe(3);
  });

  test("§5.3: maybeUpdate never moves match back, and keeps next above it", () => {
    const p = progress({ match: 5, next: 6 });
    expect(p.maybeUpdate(3)).toBe(false);
    expect(p.match).toBe(5);
    expect(p.maybeUpdate(9)).toBe(true);
    expect([p.match, p.next]).toEqual([9, 10]);
  });
});

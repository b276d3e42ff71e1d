/** Ticks and the stall detector (src/node/ticker.ts) over a fake clock: time enters the core only as ticks. */
import { expect, test } from "bun:test";
import { Ticker, type TickCore } from "../../src/node/ticker.ts";

const timing = { tickMs: 50, electionTicks: 20, stallMs: 1000 };

function fakeCore(role: "leader" | "follower"): TickCore & { stepDowns: string[] } {
  const core = {
    view: { role, term: 7 },
    stepDowns: [] as string[],
    stepDown(reason: string) {
      core.stepDowns.push(reason);
      core.view.role = "follower";
    },
  };
  return core as TickCore & { stepDowns: string[] };
}

function ticker(): { t: Ticker; warnings: string[] } {
  const warnings: string[] = [];
  return { t: new Ticker({ timing, log: { warn: (msg: string) => void warnings.push(msg) } }), warnings };
}

test("each timer tick gives the core the ticks that elapsed since the last one: at least one, at most an election timeout's worth", () => {
  const { t } = ticker();
  const core = fakeCore("follower");
  t.start(1000);
  expect(t.tick(core, 1050).ticks).toBe(1); // on time
  expect(t.tick(core, 1060).ticks).toBe(1); // early: still one
  expect(t.tick(core, 1260).ticks).toBe(4); // a 200 ms pause: four missed ticks are made up
  expect(t.tick(core, 1260 + 900).ticks).toBe(18);
  expect(t.tick(core, 1260 + 900 + 60_000).ticks).toBe(timing.electionTicks); // capped
});

test("a leader whose loop stood still past stallMs steps down before anything else; a follower, or a pause within the threshold, does not", () => {
  const { t, warnings } = ticker();
  const leader = fakeCore("leader");
  t.start(0);
  expect(t.checkStall(leader, 1000)).toBe(false); // exactly the threshold: not a stall
  expect(t.tick(leader, 1000).stalled).toBe(false);
  const follower = fakeCore("follower");
  expect(t.checkStall(follower, 5000)).toBe(false);
  expect(follower.stepDowns).toEqual([]);
  const r = t.tick(leader, 2500); // 1500 ms since the last tick
  expect(r.stalled).toBe(true);
  expect(leader.stepDowns).toEqual(["event loop stalled 1500 ms"]);
  expect(warnings[0]).toContain("event loop stalled for 1500 ms (threshold 1000 ms)");
});

test("the stall check before an input (a request, a peer message) sees the pause before the overdue tick runs", () => {
  const { t } = ticker();
  const leader = fakeCore("leader");
  t.start(0);
  t.tick(leader, 50);
  // The process stood still 3 s; a request arrives before the timer callback.
  expect(t.checkStall(leader, 3050)).toBe(true);
  expect(leader.view.role).toBe("follower");
  // The tick that follows finds a follower: nothing more to do, the ticks are still made up.
  expect(t.tick(leader, 3051)).toEqual({ ticks: timing.electionTicks, stalled: false });
});

test("no stall is reported before the ticker started or without a core", () => {
  const { t } = ticker();
  expect(t.checkStall(fakeCore("leader"), 1e9)).toBe(false);
  t.start(10);
  expect(t.checkStall(undefined, 1e9)).toBe(false);
});

/** The write path above the core (src/node/writes.ts) over a fake core: forwarding once, the bounds, and the typed refusals. */
import { expect, test } from "bun:test";
import type { ProposeOutcome } from "../../src/node/api.ts";
import { BusyError, NoLeaderError, OverloadedError } from "../../src/node/errors.ts";
import { ProposalWaiters } from "../../src/node/waiters.ts";
import { Writes, type WriteCore } from "../../src/node/writes.ts";
import { NotLeaderError, ProposalDroppedError, type RaftView } from "../../src/raft/index.ts";

function core(role: "leader" | "follower", leader: string, propose: () => { index: number; term: number } = () => ({ index: 5, term: 2 })): WriteCore {
  return { view: { role, leader } as RaftView, propose };
}

function writes(o: { core: WriteCore; proposals?: ProposalWaiters; savedWaiting?: number; forwarded?: string[] }) {
  const counters = { proposals: 0, forwarded: 0 };
  const w = new Writes({
    id: "n1",
    witness: false,
    writable: () => o.core,
    forward: (lead) => {
      o.forwarded?.push(lead);
      return Promise.resolve({ kind: "accepted", raftIndex: 1, term: 1 } as ProposeOutcome);
    },
    proposals: o.proposals ?? new ProposalWaiters(10),
    saved: { waitPersisted: () => Promise.resolve(), persistWaiting: () => o.savedWaiting ?? 0, persistWaitersMax: 3 },
    inFlightMax: 10,
    schedule: () => {},
    counters,
  });
  return { w, counters };
}

const req = (mayForward: boolean) => ({ bytes: new Uint8Array([1]), wait: "accepted" as const, timeoutMs: 1000, mayForward });

test("a follower forwards a write to the leader once; a write forwarded to it is not forwarded again", async () => {
  const forwarded: string[] = [];
  const { w, counters } = writes({ core: core("follower", "n2"), forwarded });
  expect((await w.propose(req(true))).kind).toBe("accepted");
  expect(forwarded).toEqual(["n2"]);
  expect(counters.forwarded).toBe(1);
  expect(await w.propose(req(false)).catch((e: unknown) => e)).toBeInstanceOf(NoLeaderError);
  expect(forwarded).toEqual(["n2"]);
});

test("the leader refuses with OverloadedError when waiting writers reach their bound (proposals or saved-entry waiters)", async () => {
  const full = new ProposalWaiters(1);
  void full.wait({ index: 1, term: 1 }, 10_000).catch(() => {});
  expect(await writes({ core: core("leader", "n1"), proposals: full }).w.propose(req(true)).catch((e: unknown) => e)).toBeInstanceOf(OverloadedError);
  full.failAll(new Error("test over"));
  expect(await writes({ core: core("leader", "n1"), savedWaiting: 3 }).w.propose(req(true)).catch((e: unknown) => e)).toBeInstanceOf(OverloadedError);
});

test("the core's refusals become typed node errors: a dropped proposal is BusyError, a lost leadership NoLeaderError", async () => {
  const dropped = core("leader", "n1", () => {
    throw new ProposalDroppedError("a leadership transfer is under way");
  });
  const e = await writes({ core: dropped }).w.propose(req(true)).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(BusyError);
  expect((e as BusyError).code).toBe("busy");
  const lost = core("leader", "n1", () => {
    throw new NotLeaderError("n2");
  });
  expect(await writes({ core: lost }).w.propose(req(true)).catch((x: unknown) => x)).toBeInstanceOf(NoLeaderError);
});

test("an accepted write resolves once its entry is saved, with its index and term", async () => {
  const { w, counters } = writes({ core: core("leader", "n1") });
  expect(await w.propose(req(true))).toEqual({ kind: "accepted", raftIndex: 5, term: 2 });
  expect(counters.proposals).toBe(1);
});

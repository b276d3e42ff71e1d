/** Expected refusals of a write are typed errors (checked with instanceof), each with its API code. */
import { afterEach, expect, test } from "bun:test";
import { toApiError } from "../../src/api/errors.ts";
import { BadRequestError, BusyError, DiskFullError, NodeError, NoLeaderError, OverloadedError, ProposalLostError, StoppedError, TimeoutError } from "../../src/node/errors.ts";
import { fromWireError, RemoteError, toWireError } from "../../src/node/peer.ts";
import { InvalidCommandError } from "../../src/statemachine/commands.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { inprocCluster, waitStableVoters, type InprocCluster } from "../helpers/inproc.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

test("a write proposed while the leader hands leadership over is refused with BusyError (code busy, 503), not a generic NodeError", async () => {
  c = await inprocCluster(["n1", "n2", "n3"]);
  for (const id of ["n1", "n2", "n3"]) await c.start(id);
  const lead = await c.leader();
  await waitStableVoters(lead, 3); // the others join as learners first: a transfer needs a voter
  const raft = (lead as unknown as { raft: { transferLeadership(to: string): void; trk: { voterIds(): Iterable<string> } } }).raft;
  const to = [...raft.trk.voterIds()].find((v) => v !== lead.id)!;
  raft.transferLeadership(to); // the core drops proposals until the transfer ends
  const err = await lead.propose({ op: "changes", items: [{ data: 1, tags: [] }], ts: Date.now() }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BusyError);
  expect(err).toBeInstanceOf(NodeError);
  expect((err as BusyError).code).toBe("busy");
  expect(toApiError(err, memoryLogger().log, "test").status).toBe(503); // the API picks the status, by the error's class
}, 30_000);

test("the API picks each node error's status by its code; an error forwarded back from the leader comes back as the same class and is answered alike", () => {
  const log = memoryLogger().log;
  const cases: [Error, number][] = [
    [new NoLeaderError(), 503],
    [new TimeoutError("a write", 10), 503],
    [new ProposalLostError(4), 503],
    [new OverloadedError(10), 503],
    [new BusyError("a leadership transfer is under way"), 503],
    [new StoppedError(), 503],
    [new BadRequestError("no such voter"), 400],
    [new DiskFullError("/data/raft.db"), 507],
    [new InvalidCommandError("too big", true), 413],
  ];
  for (const [err, status] of cases) {
    const local = toApiError(err, log, "test");
    const back = fromWireError(toWireError(err));
    // Rebuilt as the same class (a write forwarded to the leader fails as it failed there), with the leader's message.
    expect(back.constructor).toBe(err.constructor === InvalidCommandError ? RemoteError : err.constructor);
    const remote = toApiError(back, log, "test");
    expect({ name: err.name, status: local.status }).toEqual({ name: err.name, status });
    expect({ name: err.name, status: remote.status, code: remote.code, message: remote.message }).toEqual({ name: err.name, status, code: local.code, message: local.message });
  }
  // The node's errors carry no HTTP status of their own.
  expect("status" in new BusyError("x")).toBe(false);
  // A peer's unexpected failure is a 500 on the asking node too.
  expect(toApiError(fromWireError(toWireError(new Error("boom"))), log, "test").status).toBe(500);
});

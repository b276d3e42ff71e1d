/** Expected refusals of a write are typed errors (checked with instanceof), each with its API code. */
import { afterEach, expect, test } from "bun:test";
import { toApiError } from "../../src/api/errors.ts";
import { BusyError, NodeError } from "../../src/node/errors.ts";
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

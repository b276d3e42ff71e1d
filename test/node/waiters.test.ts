import { expect, test } from "bun:test";
import { ProposalLostError } from "../../src/node/errors.ts";
import { ProposalWaiters } from "../../src/node/waiters.ts";

test("a proposal at an index an unsettled older proposal had: the older one is lost, its deadline does not cancel the newer one", async () => {
  const w = new ProposalWaiters(10);
  const older = w.wait({ index: 5, term: 2 }, 20);
  const olderOutcome = older.then(
    () => "resolved",
    (e: unknown) => e,
  );
  const newer = w.wait({ index: 5, term: 3 }, 5_000);
  expect(await olderOutcome).toBeInstanceOf(ProposalLostError);
  await new Promise((r) => setTimeout(r, 60)); // past the older one's deadline
  w.applied(5, 3, "result");
  expect(await newer).toBe("result");
  expect(w.size).toBe(0);
});

import { expect, test } from "bun:test";
import { PeerCalls } from "../../src/node/peer.ts";
import { decodeBody, encodeFrame, FRAME_HEADER_BYTES } from "../../src/transport/frame.ts";

/** Opens one call on `calls` to n3 and returns its id and its outcome (settled or still open). */
function open(calls: PeerCalls): { id: number; outcome: () => unknown } {
  let id = -1;
  let outcome: unknown = "open";
  calls.call("n3", "the write forwarded to leader n3", 5_000, (i) => ((id = i), true)).then(
    (v) => (outcome = v),
    (e: unknown) => (outcome = e),
  );
  return { id, outcome: () => outcome };
}

test("an answer meant for the previous process's request does not settle the restarted node's request", async () => {
  // The chaos seed-11 failure: n1 forwarded writes, was killed, and the leader queued their answers;
  // after the restart they arrived and settled n1's new forwarded writes with the same ids (a 412 for a write that was applied).
  for (let run = 0; run < 50; run++) {
    const before = new PeerCalls(10);
    const stale = [open(before), open(before), open(before)];
    before.failAll(new Error("killed")); // the process ends: its table is gone
    const after = new PeerCalls(10);
    const fresh = [open(after), open(after), open(after)];
    for (const s of stale) after.answer("n3", { t: "resp", id: s.id, ok: true, value: `answer to the old ${s.id}` });
    await Promise.resolve();
    for (const f of fresh) expect(f.outcome()).toBe("open");
    for (const f of fresh) after.answer("n3", { t: "resp", id: f.id, ok: true, value: `answer to ${f.id}` });
    await Promise.resolve();
    for (const f of fresh) expect(f.outcome()).toBe(`answer to ${f.id}`);
  }
});

test("request ids are safe integers that survive the peer frame encoding", () => {
  const calls = new PeerCalls(10);
  const c = open(calls);
  expect(Number.isSafeInteger(c.id)).toBe(true);
  const top = 2 ** 52 - 1;
  for (const id of [c.id, top]) {
    const frame = encodeFrame({ t: "resp", id, ok: true, value: null });
    expect((decodeBody(frame.subarray(FRAME_HEADER_BYTES)) as { id: number }).id).toBe(id);
  }
  calls.failAll(new Error("done"));
});

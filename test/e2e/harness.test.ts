/** The e2e harness itself: the ports it gives a cluster, and what it says when a node died. */
import { afterEach, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { ephemeralPortRange } from "../helpers/ports.ts";
import { E2ECluster } from "./harness.ts";

let c: E2ECluster | undefined;
let held: Server | undefined;
afterEach(async () => {
  held?.close();
  held = undefined;
  await c?.close();
  c = undefined;
});

const portOf = (addr: string): number => Number(new URL(addr.includes("://") ? addr : `tcp://${addr}`).port);

test("a test cluster's peer and API ports lie outside the ephemeral range, so a node started late still finds them free", async () => {
  c = await E2ECluster.init(5);
  const { lo, hi } = ephemeralPortRange();
  for (const n of c.readFile().nodes) {
    for (const port of [portOf(n.peer), portOf(n.api)]) expect(port < lo || port > hi).toBe(true);
  }
});

test("waiting for a leader names a node that exited and its last error line; a peer port in use is told with what to do", async () => {
  c = await E2ECluster.init(1);
  const cl = c;
  held = createServer();
  await new Promise<void>((r) => held!.listen(portOf(cl.peer("n1")), "127.0.0.1", () => r()));
  cl.start("n1");
  const err = await cl.leader(3000).then(
    () => null,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/waiting for an agreed leader: Error: n1 exited \(code 1\); its last error line: .*cannot listen for peers on 127\.0\.0\.1:\d+/);
  // A port in use is an expected failure: told with what to do, not as a bug to report.
  expect(err?.message).toContain("another process holds that port: stop it, or give this node another port in the cluster file");
  expect(err?.message).not.toContain("unexpected");
}, 20_000);

test("waiting for a leader that never comes says what each node saw last", async () => {
  c = await E2ECluster.init(3);
  c.start("n1"); // one founder of three: it waits for the others, there is no leader
  const err = await c.leader(3000, ["n1", "n2"]).then(
    () => null,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/waiting for an agreed leader: Error: no agreement: n1: leader none \(term \d+\), n2: no \/status answer$/);
}, 20_000);

/**
 * Pre-commit validators through dist/cairn (issue 12): the cluster file's
 * "validators" reach the leader, a write sent to a follower is validated once
 * at the leader, and an edit of the file changes them without a restart.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster } from "./harness.ts";

let c: E2ECluster | undefined;
let server: ReturnType<typeof Bun.serve> | undefined;
afterEach(async () => {
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, "validators"));
  await c?.close();
  await server?.stop(true);
  c = server = undefined;
});

test("validators in the cluster file refuse writes with 422 and the reason, once per write, and follow edits of the file", async () => {
  let calls = 0;
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      calls++;
      const b = (await req.json()) as { items?: { data: { price?: number } }[] };
      const bad = b.items?.some((it) => (it.data.price ?? 0) <= 0);
      return Response.json(bad ? { ok: false, reason: "price must be positive" } : { ok: true });
    },
  });
  const url = `http://127.0.0.1:${server.port}/check`;
  const cl = (c = await E2ECluster.init(3, (f) => Object.assign(f, { validators: [{ url, tags: ["orders"], timeoutMs: 2000 }] })));
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  const leader = await cl.leader(30_000);
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const ok = await cl.post(follower, { price: 5 }, { tags: ["orders"] });
  expect(ok.status).toBe(201);
  expect(calls).toBe(1);
  const refused = await cl.post(follower, { price: -1 }, { tags: ["orders"] });
  expect(refused.status).toBe(422);
  expect(refused.body.error.code).toBe("rejected");
  expect(refused.body.error.message).toContain("price must be positive");
  expect(calls).toBe(2);
  expect((await cl.post(leader, { price: -1 }, { tags: ["other"] })).status).toBe(201);
  expect(calls).toBe(2);
  cl.editFile((f) => delete (f as { validators?: unknown }).validators);
  await waitFor("the edit is in force", async () => (await cl.post(leader, { price: -1 }, { tags: ["orders"] })).status === 201, 20_000, 100);
}, 120_000);

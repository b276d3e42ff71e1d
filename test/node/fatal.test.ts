/**
 * Crash-only: a database error in the node's loop stops the node at once
 * through one path (fatal), which the embedder turns into a process exit
 * (serve: exit 1; test/e2e/datadir.test.ts runs that with the real binary).
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { createApp } from "../../src/api/app.ts";
import { lockDataDir } from "../../src/node/datadir.ts";
import type { Db } from "../../src/platform/sqlite.ts";
import { Logger } from "../../src/util/log.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

test("a database error in the Raft loop stops the node once: onFatal called once, not ready, /health 503, one log line, the data directory's lock released", async () => {
  const fatal: Error[] = [];
  c = await inprocCluster(["n1"], { node: { onFatal: (e) => fatal.push(e) } });
  const n = await c.start("n1");
  await c.leader();
  await n.propose({ op: "changes", items: [{ data: 1, tags: [] }], ts: Date.now() });
  // The database connection is gone from under the node: its next write (persisting the Ready) fails.
  (n as unknown as { store: { db: Db } }).store.db.close();
  const writes = [1, 2, 3].map(() => n.propose({ op: "changes", items: [{ data: 2, tags: [] }], ts: Date.now() }).then(() => "ok", (e: Error) => e.name));
  await waitFor("onFatal", () => fatal.length > 0, 5000);
  expect(await Promise.all(writes)).not.toContain("ok");
  expect(n.failed()).toBe(fatal[0]!);
  expect(n.readiness().ready).toBe(false);
  const app = createApp({ node: n, logger: new Logger({ level: "error", sink: () => {} }), version: "test" });
  expect((await app.fetch(new Request("http://x/health"))).status).toBe(503);
  // Over some ticks (an absence cannot be polled for): nothing repeats, no error storm.
  await new Promise((r) => setTimeout(r, 300));
  expect(fatal.length).toBe(1);
  expect(c.logs.filter((l) => l.includes('"fatal: ')).length).toBe(1);
  expect(c.logs.filter((l) => l.includes('"level":"error"')).length).toBe(1);
  lockDataDir(join(c.dir, "n1"), "test").release();
});

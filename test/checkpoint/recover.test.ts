/**
 * `cairn recover` on a real data directory: every entry of the survivor's
 * log is kept, also those past the commit index it knew (an old leader may
 * have acknowledged them before this node heard of the commit), the node
 * becomes the one voter of a new cluster, and it serves again.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { recover } from "../../src/cli/data.ts";
import { UsageError } from "../../src/cli/args.ts";
import { encodeCommand } from "../../src/statemachine/commands.ts";
import { RaftStore } from "../../src/storage/store.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";

let c: InprocCluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

test("recover keeps and applies the entries past the known commit index, fences the old cluster ID, and the node serves", async () => {
  c = await inprocCluster(["n1"]);
  let n = await c.start("n1");
  await c.leader();
  for (let i = 0; i < 5; i++) await n.propose({ op: "changes", items: [{ data: { early: i }, tags: [] }], ts: Date.now() });
  const oldCluster = n.status().clusterId;
  await c.stop("n1");

  // Three entries that reached this node's log, but not the news that they were committed.
  const dir = join(c.dir, "n1");
  let store = RaftStore.open({ dir });
  const last = store.lastIndex();
  const term = store.term(last);
  const commitBefore = store.hardState().commit;
  const late = [0, 1, 2].map((i) => ({ index: last + 1 + i, term, kind: "normal" as const, data: encodeCommand({ op: "changes", items: [{ data: { late: i }, tags: ["late"] }], ts: Date.now() }) }));
  store.persist({ entries: late, hardState: store.hardState() });
  expect(store.hardState().commit).toBe(commitBefore);
  store.close();

  await expect(recover(["--data", dir, "--id", "n1"])).rejects.toBeInstanceOf(UsageError);
  expect(await recover(["--data", dir, "--id", "n1", "--yes"])).toBe(0);
  store = RaftStore.open({ dir });
  try {
    expect(store.appliedIndex()).toBe(last + 3);
    expect(store.clusterId()).not.toBe(oldCluster);
    expect(store.confState().voters).toEqual(["n1"]);
  } finally {
    store.close();
  }

  n = await c.start("n1");
  await c.leader();
  const feed = n.fsm.feedState();
  expect(feed.last).toBe(8);
  expect(n.fsm.getChange(8)?.data).toEqual({ late: 2 });
  expect(n.fsm.getChange(6)?.tags).toEqual(["late"]);
  const out = await n.propose({ op: "changes", items: [{ data: "after recover", tags: [] }], ts: Date.now() });
  expect(out.kind).toBe("applied");
  expect(n.fsm.feedState().last).toBe(9);
}, 30_000);

import { afterEach, describe, expect, test } from "bun:test";
import type { Db } from "../../src/platform/sqlite.ts";
import type { ConfState, Entry } from "../../src/raft/types.ts";
import { CairnFsm } from "../../src/statemachine/cairn.ts";
import { encodeCommand, type Command } from "../../src/statemachine/commands.ts";
import { Applier, type FsmEntry } from "../../src/statemachine/fsm.ts";
import { DiskFullError } from "../../src/storage/errors.ts";
import { caught, TempDirs } from "../platform/testutil.ts";
import { Node } from "./harness.ts";

const tmp = new TempDirs();
const nodes: Node[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.close();
  tmp.cleanup();
});

function node(): Node {
  const n = new Node(tmp.make());
  nodes.push(n);
  return n;
}

const post = (data: unknown, ts = 1000): Command => ({ op: "changes", items: [{ data: data as never, tags: [] }], ts });
const CONF: ConfState = { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] };

function entry(index: number, cmd?: Command, kind: "normal" | "conf" = "normal"): Entry {
  if (kind === "conf") return { index, term: 1, kind, data: new Uint8Array(), conf: { op: "init", changes: [{ type: "addVoter", node: "n1" }] } };
  return { index, term: 1, kind, data: cmd ? encodeCommand(cmd) : new Uint8Array() };
}

describe("Applier", () => {
  test("conf entries and empty entries only advance the applied index and store the conf", () => {
    const n = node();
    const results = n.applier.apply([entry(1, undefined, "conf"), entry(2), entry(3, post("a"))], CONF);
    expect([...results.keys()]).toEqual([3]);
    expect(results.get(3)).toEqual({ index: 1, last: 1, term: 1, ts: 1000 });
    expect(n.applier.appliedIndex()).toBe(3);
    expect(n.applier.confState()).toEqual(CONF);
    n.reopen();
    expect(n.store.initialState().confState).toEqual(CONF);
  });

  test("a restart neither repeats nor skips an entry", () => {
    const n = node();
    n.applier.apply([entry(1, post("a")), entry(2, post("b")), entry(3, post("c"))]);
    n.reopen();
    expect(n.applier.appliedIndex()).toBe(3);
    // The driver may hand over entries again after a restart: only new ones apply.
    const results = n.applier.apply([entry(2, post("b")), entry(3, post("c")), entry(4, post("d"))]);
    expect([...results.keys()]).toEqual([4]);
    const feed = n.fsm.listChanges({});
    expect(feed.changes.map((c) => [c.index, c.data])).toEqual([[1, "a"], [2, "b"], [3, "c"], [4, "d"]]);
    expect(() => n.applier.apply([entry(6, post("f"))])).toThrow("apply gap");
  });

  test("a batch that fails part-way applies nothing: no changes, no applied index", () => {
    const dir = tmp.make();
    const cairn = new CairnFsm();
    let calls = 0;
    const crashing = {
      init: (db: Db) => cairn.init(db),
      apply: (db: Db, e: FsmEntry) => {
        if (++calls === 2) throw new Error("crash mid-batch");
        return cairn.apply(db, e);
      },
    };
    const n = new Node(dir, crashing);
    nodes.push(n);
    expect(() => n.applier.apply([entry(1, post("a")), entry(2, post("b"))])).toThrow("crash mid-batch");
    expect(n.applier.appliedIndex()).toBe(0);
    expect(cairn.listChanges({}).changes).toEqual([]);
    expect(cairn.feedState()).toEqual({ first: 1, last: 0, ts: 0 });
    // Retrying the same batch applies it once.
    const results = n.applier.apply([entry(1, post("a")), entry(2, post("b"))]);
    expect(results.size).toBe(2);
    expect(n.applier.appliedIndex()).toBe(2);
    expect(cairn.listChanges({}).changes.map((c) => c.index)).toEqual([1, 2]);
  });

  test("a full disk fails the batch with DiskFullError; reads go on; the retry applies once", () => {
    const n = node();
    n.apply({ op: "put", key: "k", value: new Uint8Array(10), contentType: "application/octet-stream", ts: 1 });
    const db = n.store.db;
    const pages = db.prepare("PRAGMA page_count").get()!.page_count as number;
    db.prepare(`PRAGMA max_page_count = ${pages + 1}`).get();
    const big: Command = { op: "put", key: "big", value: new Uint8Array(200_000), contentType: "application/octet-stream", ts: 2 };
    expect(caught(() => n.apply(big))).toBeInstanceOf(DiskFullError);
    expect(n.applier.appliedIndex()).toBe(1);
    expect(n.fsm.get("k")?.version).toBe(1);
    expect(n.fsm.listChanges({}).changes).toHaveLength(1);
    db.prepare("PRAGMA max_page_count = 1000000").get();
    expect(n.apply(big)).toMatchObject({ op: "put", key: "big", version: 2 });
    expect(n.applier.appliedIndex()).toBe(2);
  });

  test("init creates the tables once; a reopened node keeps its state", () => {
    const n = node();
    n.apply({ op: "put", key: "a", value: new Uint8Array([1]), contentType: "x/y", ts: 5 });
    n.reopen();
    expect(n.fsm.get("a")).toEqual({ value: new Uint8Array([1]), contentType: "x/y", version: 1 });
    expect(new Applier({ store: n.store, fsm: new CairnFsm() }).appliedIndex()).toBe(1);
  });
});

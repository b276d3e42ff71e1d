/**
 * buildCheckpointFile on real SQLite files: a consistent, exact copy of every
 * state-machine table (rowid and WITHOUT ROWID tables, an embedder's own
 * tables with every value type, AUTOINCREMENT counters, indexes), without
 * the log or the node's identity, written in paced, flushed slices while the
 * source goes on taking writes.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCheckpointFile, sha256File } from "../../src/checkpoint/build.ts";
import { openDatabase, type Db } from "../../src/platform/sqlite.ts";
import { CairnFsm } from "../../src/statemachine/cairn.ts";
import { encodeCommand } from "../../src/statemachine/commands.ts";
import { Applier } from "../../src/statemachine/fsm.ts";
import { RaftStore } from "../../src/storage/store.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "cairn-build-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A node's store with `n` applied changes and puts, plus an embedder's tables. */
function sourceStore(n: number): RaftStore {
  const store = RaftStore.open({ dir });
  const applier = new Applier({ store, fsm: new CairnFsm() });
  const ents = Array.from({ length: n }, (_, i) => ({
    index: i + 1,
    term: 1,
    kind: "normal" as const,
    data: encodeCommand(
      i % 2
        ? { op: "changes", items: [{ data: { i, s: "x".repeat(i % 300) }, tags: i % 3 ? ["a", `t${i % 7}`] : [] }], ts: 1_000 + i }
        : { op: "put", key: `k/${i % 97}`, value: new Uint8Array(2000).fill(i & 255), contentType: "application/octet-stream", ts: 1_000 + i },
    ),
  }));
  store.persist({ entries: ents, hardState: { term: 1, vote: "n1", commit: n }, clusterId: "c-1" });
  applier.apply(ents, { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] });
  store.setNodeId("n1");
  store.db.exec(`
    CREATE TABLE emb_values (id INTEGER PRIMARY KEY AUTOINCREMENT, r REAL, i INTEGER, t TEXT, b BLOB, anything);
    CREATE TABLE emb_pairs (a TEXT NOT NULL, b INTEGER NOT NULL, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
    CREATE INDEX emb_pairs_v ON emb_pairs (v);
  `);
  const ins = store.db.prepare("INSERT INTO emb_values (r, i, t, b, anything) VALUES (?, ?, ?, ?, ?)");
  const pair = store.db.prepare("INSERT INTO emb_pairs VALUES (?, ?, ?)");
  store.db.transaction(() => {
    for (let i = 0; i < 3000; i++) {
      ins.run(i / 4, i, `t${i}`, new Uint8Array([i & 255, 0, 7]), i % 5 === 0 ? null : i % 2 ? `s${i}` : i * 1.5);
      pair.run(`a${i % 13}`, i, i % 3 ? `v${i}` : null);
    }
    store.db.exec("DELETE FROM emb_values WHERE id % 10 = 0");
  });
  return store;
}

const TABLES = ["meta", "raft_state", "feed_state", "changes", "change_tags", "kv", "idem", "emb_values", "emb_pairs", "sqlite_sequence"];

/** A table's rows with each value's SQLite type, in a stable order. */
function dumpTable(db: Db, t: string): string {
  const cols = db.prepare(`SELECT name FROM pragma_table_info(?)`).all(t).map((c) => String(c.name));
  const sel = cols.map((c) => `typeof("${c}") || ':' || quote("${c}")`).join(" || '|' || ");
  return JSON.stringify(db.prepare(`SELECT ${sel} AS r FROM "${t}" ORDER BY ${cols.map((c) => `"${c}"`).join(", ")}`).all().map((r) => r.r));
}

test("the copy has exactly the source's state-machine tables, values and types; no log, no vote, no node id", () => {
  const store = sourceStore(600);
  const out = join(dir, "out.db.tmp");
  try {
    const res = buildCheckpointFile({ dbPath: store.path, outPath: out });
    expect(res.index).toBe(600);
    expect(res.conf.voters).toEqual(["n1"]);
    expect(res.feedLast).toBe(600); // every key-value write is in the feed too
    expect(res.sha256).toBe(sha256File(out));
    expect(existsSync(`${out}-wal`) || existsSync(`${out}-journal`)).toBe(false);
    const copy = openDatabase(out);
    try {
      for (const t of TABLES) {
        if (t === "meta" || t === "raft_state") continue;
        expect(dumpTable(copy, t)).toBe(dumpTable(store.db, t));
      }
      expect(Number(copy.prepare("SELECT COUNT(*) AS n FROM raft_log").get()!.n)).toBe(0);
      expect(copy.prepare("SELECT value FROM meta WHERE key = 'node_id'").get() ?? null).toBeNull();
      expect(copy.prepare("SELECT value FROM meta WHERE key = 'cluster_id'").get()?.value).toBe("c-1");
      const st = copy.prepare("SELECT term, vote, commit_index, applied_index FROM raft_state").get()!;
      expect(st).toEqual({ term: 0, vote: "", commit_index: 600, applied_index: 600 });
      // Indexes came along (the query planner can use them).
      const idx = copy.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name").all().map((r) => r.name);
      expect(idx).toEqual(["change_tags_idx", "changes_ts", "emb_pairs_v", "idem_ts"]);
      expect(copy.prepare("PRAGMA integrity_check").get()?.integrity_check).toBe("ok");
    } finally {
      copy.close();
    }
  } finally {
    store.close();
  }
});

test("a paced build takes at least bytes / rate, and the copy is one consistent state while the source takes writes", async () => {
  const store = sourceStore(400);
  const out = join(dir, "paced.db.tmp");
  try {
    const unpaced = buildCheckpointFile({ dbPath: store.path, outPath: join(dir, "fast.db.tmp") });
    const rate = 4 << 20;
    // Writes to the source from another connection while the build runs in this thread are not possible;
    // a writer in a worker is: it appends to the embedder's table as fast as it can meanwhile.
    const worker = new Worker(URL.createObjectURL(new Blob([`
      import { Database } from "bun:sqlite";
      self.onmessage = (e) => {
        const db = new Database(e.data.path); db.exec("PRAGMA busy_timeout=5000");
        const ins = db.prepare("INSERT INTO emb_pairs VALUES ('w', ?, 'writer')");
        let i = 0; const end = performance.now() + e.data.ms;
        while (performance.now() < end) { db.transaction(() => { for (let k = 0; k < 50; k++) ins.run(i++); })(); }
        db.close(); self.postMessage(i);
      };`], { type: "application/javascript" })));
    const writes = new Promise<number>((r) => (worker.onmessage = (e) => r(e.data as number)));
    const t0 = performance.now();
    worker.postMessage({ path: store.path, ms: 400 });
    const res = buildCheckpointFile({ dbPath: store.path, outPath: out, bytesPerSec: rate });
    const ms = performance.now() - t0;
    const wrote = await writes;
    worker.terminate();
    expect(ms).toBeGreaterThanOrEqual(((unpaced.bytes - (1 << 20)) / rate) * 1000 * 0.9);
    expect(res.index).toBe(400);
    const copy = openDatabase(out);
    try {
      // All of the writer's batches or none of a batch: the copy is one committed state.
      const n = Number(copy.prepare("SELECT COUNT(*) AS n FROM emb_pairs WHERE a = 'w'").get()!.n);
      expect(n % 50).toBe(0);
      expect(n).toBeLessThanOrEqual(wrote);
      expect(copy.prepare("PRAGMA integrity_check").get()?.integrity_check).toBe("ok");
    } finally {
      copy.close();
    }
  } finally {
    store.close();
  }
});

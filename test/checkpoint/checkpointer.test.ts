/**
 * The checkpointer on real SQLite files: log compaction up to the applied
 * index with no checkpoint built, its build policy (every K entries, keep M),
 * builds in a real worker thread, what holds the log (followers, offers, a
 * build in progress), pruning of partial files, and what a failed build
 * leaves behind.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCheckpointFile, sha256File } from "../../src/checkpoint/build.ts";
import { Checkpointer, workerRunner, workerUrl } from "../../src/checkpoint/checkpointer.ts";
import { checkpointDir, dbPath, idFor, listCheckpoints, pruneCheckpoints, writeManifest, type Manifest } from "../../src/checkpoint/manifest.ts";
import { openDatabase } from "../../src/platform/sqlite.ts";
import { CairnFsm } from "../../src/statemachine/cairn.ts";
import { encodeCommand } from "../../src/statemachine/commands.ts";
import { Applier } from "../../src/statemachine/fsm.ts";
import { RaftStore } from "../../src/storage/store.ts";
import { Logger } from "../../src/util/log.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await c?.close();
  c = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const put = (i: number) => ({ op: "put" as const, key: `k${i % 20}`, value: new TextEncoder().encode(`value ${i} `.repeat(20)), contentType: "text/plain", ts: Date.now() });

test("the log is compacted to the applied index less the trailing entries with no checkpoint built", async () => {
  c = await inprocCluster(["n1"], { node: { checkpoints: { everyEntries: 0, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 5, compactEveryEntries: 10 } } });
  const n = await c.start("n1");
  await c.leader();
  for (let i = 0; i < 120; i++) await n.propose(put(i));
  const applied = n.status().index.applied;
  const st = await waitFor("the log compacted to within 5 + 10 entries of the applied index", () => {
    const s = n.status();
    return s.index.first - 1 >= applied - 5 - 10 ? s : undefined;
  }, 20_000);
  expect(st.index.first - 1).toBeLessThanOrEqual(applied - 5);
  expect(n.checkpoints()).toEqual([]);
  expect(st.index.checkpoint).toBe(0);
  const metrics = n.metricsText();
  expect(metrics).toMatch(/cairn_log_compactions_total [1-9]/);
  expect(metrics).toContain('cairn_checkpoints_built_total{reason="policy"} 0');
  // The state is all there after a restart from the compacted log.
  await c.stop("n1");
  const again = await c.start("n1");
  await c.leader();
  expect(again.status().index.applied).toBeGreaterThanOrEqual(applied);
  expect((await again.propose(put(999))) !== undefined).toBe(true);
}, 60_000);

test("every K entries a checkpoint is built in a worker thread; the newest M are kept", async () => {
  c = await inprocCluster(["n1"], { node: { checkpoints: { everyEntries: 25, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 5, diskShare: 1 }, checkpointRunner: workerRunner() } });
  const n = await c.start("n1");
  await c.leader();
  // At least 120 entries, and on until two builds are listed (a slow worker start may cover many entries with one build).
  for (let i = 0; i < 120 || (n.checkpoints().length < 2 && i < 5000); i++) await n.propose(put(i));
  const applied = n.status().index.applied;
  // The policy's promise: the newest checkpoint is fewer than K entries behind what is applied.
  const list = await waitFor("builds up to within 25 entries of the applied index, two kept", () => {
    const l = n.checkpoints();
    return l.length === 2 && l[0]!.index > applied - 25 && !c!.logs.some((x) => x.includes("checkpoint failed")) ? l : undefined;
  }, 20_000);
  expect(list[0]!.index).toBeGreaterThan(list[1]!.index);
  await waitFor("the status to show the newest checkpoint", () => n.status().index.checkpoint === list[0]!.index, 5000);
  // Files on disk: exactly the two listed, each with its manifest; nothing partial.
  const dir = checkpointDir(join(c.dir, "n1"));
  expect(readdirSync(dir).filter((f) => f !== "incoming").sort()).toEqual(list.flatMap((m) => [`${m.id}.db`, `${m.id}.json`]).sort());
  for (const m of list) expect(sha256File(dbPath(dir, m.id))).toBe(m.sha256);
  // A checkpoint is the state machine only: no log, no vote, no node identity.
  const db = openDatabase(dbPath(dir, list[0]!.id));
  try {
    expect(Number(db.prepare("SELECT COUNT(*) AS n FROM raft_log").get()!.n)).toBe(0);
    expect(db.prepare("SELECT value FROM meta WHERE key = 'node_id'").get() ?? null).toBeNull();
    expect(Number(db.prepare("SELECT applied_index FROM raft_state WHERE id = 1").get()!.applied_index)).toBe(list[0]!.index);
    expect(Number(db.prepare("SELECT COUNT(*) AS n FROM kv").get()!.n)).toBe(20);
  } finally {
    db.close();
  }
  expect(n.metricsText()).toMatch(/cairn_checkpoints_built_total\{reason="policy"\} [2-9]/);
}, 60_000);

test("the worker's module is found from the sources and inside a compiled binary", () => {
  expect(workerUrl("file:///$bunfs/root/cairn")).toBe("/$bunfs/root/checkpoint/worker.ts");
  expect(workerUrl("file:///B:/~BUN/root/cairn.exe")).toBe("B:/~BUN/root/checkpoint/worker.ts");
  expect(workerUrl("file:///work/src/checkpoint/checkpointer.ts")).toBe("file:///work/src/checkpoint/worker.ts");
});

function manifest(index: number): Manifest {
  return { id: idFor(index), index, term: 1, conf: { voters: ["n1"], votersOutgoing: [], learners: [], learnersNext: [] }, feedLast: index, bytes: 1, sha256: "0".repeat(64), clusterId: null, createdAt: new Date().toISOString(), buildMs: 1 };
}

test("partial files of a crash mid-build are pruned: a tmp copy, a file without a manifest, a manifest being written; complete ones stay", () => {
  const dir = mkdtempSync(join(tmpdir(), "cairn-ckpt-"));
  dirs.push(dir);
  for (const i of [10, 20, 30]) {
    writeFileSync(dbPath(dir, idFor(i)), "x");
    writeManifest(dir, manifest(i));
  }
  const partial = [`build-123-1.db.tmp`, `build-123-1.db.tmp-journal`, `${idFor(40)}.db`, `${idFor(30)}.json.tmp`, `${idFor(50)}.json.tmp`];
  for (const f of partial) writeFileSync(join(dir, f), "partial");
  writeFileSync(join(dir, `${idFor(60)}.json`), "{ not json"); // a torn manifest counts as none
  writeFileSync(dbPath(dir, idFor(60)), "x");
  mkdirSync(join(dir, "incoming"));
  expect(listCheckpoints(dir).map((m) => m.index)).toEqual([30, 20, 10]);
  // Between builds (partials false) a running build's tmp files are left alone.
  const during = pruneCheckpoints(dir, 2);
  for (const f of [`build-123-1.db.tmp`, `build-123-1.db.tmp-journal`, `${idFor(30)}.json.tmp`, `${idFor(50)}.json.tmp`]) expect(during).not.toContain(f);
  const removed = [...during, ...pruneCheckpoints(dir, 2, new Set(), true)];
  for (const f of [...partial, `${idFor(60)}.json`, `${idFor(60)}.db`, `${idFor(10)}.db`, `${idFor(10)}.json`]) expect(removed).toContain(f);
  expect(readdirSync(dir).sort()).toEqual([`${idFor(20)}.db`, `${idFor(20)}.json`, `${idFor(30)}.db`, `${idFor(30)}.json`, "incoming"].sort());
});

/**
 * A one-node cluster stopped after 10 changes, its store opened here: the
 * tests below drive a Checkpointer on it by hand. `grow(k)` appends and
 * applies k more changes, as the node would.
 */
async function stoppedNode(opts: Parameters<typeof inprocCluster>[1] = {}) {
  c = await inprocCluster(["n1"], opts);
  const n = await c.start("n1");
  await c.leader();
  for (let i = 0; i < 10; i++) await n.propose(put(i));
  await c.stop("n1");
  const dataDir = join(c.dir, "n1");
  const store = RaftStore.open({ dir: dataDir });
  let applier: Applier | undefined; // made by the first grow(): a test that only builds applies nothing
  const grow = (k: number) => {
    applier ??= new Applier({ store, fsm: new CairnFsm() });
    const last = store.lastIndex();
    const term = store.hardState().term;
    const ents = Array.from({ length: k }, (_, i) => ({ index: last + 1 + i, term, kind: "normal" as const, data: encodeCommand(put(last + i)) }));
    store.persist({ entries: ents, hardState: { ...store.hardState(), commit: last + k } });
    applier.apply(ents);
  };
  type Rest = Omit<ConstructorParameters<typeof Checkpointer>[0], "dataDir" | "store" | "clusterId">;
  const checkpointer = (o: Rest) => new Checkpointer({ dataDir, store, clusterId: () => store.clusterId(), ...o });
  return { store, grow, checkpointer };
}

test("a failed build leaves no file and is retried only after a back-off, not on every tick", async () => {
  const { store, checkpointer } = await stoppedNode({ node: { checkpoints: { everyEntries: 1_000_000, everyMs: 0, logBytesMax: 0 } } });
  const logs: string[] = [];
  let runs = 0;
  const cp = checkpointer({
    log: new Logger({ level: "debug", sink: (l) => logs.push(l) }),
    policy: { everyEntries: 1, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 0 },
    run: async (req) => {
      runs++;
      writeFileSync(req.outPath, "half a copy");
      throw new Error("disk I/O error");
    },
  });
  try {
    cp.maybeStart();
    await waitFor("the build to fail", () => logs.some((l) => l.includes("checkpoint failed")) && !cp.busy, 5000, 5);
    for (let i = 0; i < 50; i++) {
      cp.maybeStart();
      await Bun.sleep(2); // ticks spread over time: an absence (no retry) cannot be polled for
    }
    expect(runs).toBe(1);
    expect(readdirSync(cp.dir).filter((f) => f !== "incoming")).toEqual([]);
    expect(cp.requestBuild("test")).toBe(false); // backing off
    expect(existsSync(cp.dir)).toBe(true);
  } finally {
    store.close();
  }
}, 30_000);

test("a checkpoint offered to a peer stays its choice and on disk past `keep`, and the log after it is kept; live followers hold the log too", async () => {
  const { store, grow, checkpointer } = await stoppedNode();
  let need = Infinity;
  const cp = checkpointer({
    log: new Logger({ level: "error" }),
    policy: { everyEntries: 0, everyMs: 0, logBytesMax: 0, keep: 1, trailingEntries: 0, compactEveryEntries: 1 },
    run: async (req) => buildCheckpointFile(req),
    followersNeed: () => need,
  });
  try {
    // A live follower at index L holds the log after L.
    grow(10);
    need = store.lastIndex() - 4;
    cp.maybeCompact();
    expect(store.firstIndex() - 1).toBe(need);
    need = Infinity;
    cp.maybeCompact();
    expect(store.firstIndex() - 1).toBe(store.appliedIndex());
    // Offered to n9: its choice until done, kept on disk although keep = 1, and the log after it stays.
    const m1 = (await cp.create())!;
    cp.offering("n9", m1);
    grow(10);
    cp.maybeCompact();
    const m2 = (await cp.create())!;
    expect(m2.index).toBeGreaterThan(m1.index);
    expect(cp.list().map((m) => m.id)).toEqual([m2.id, m1.id]);
    expect(store.firstIndex() - 1).toBe(m1.index);
    expect(cp.forPeer("n9", store.firstIndex())?.id).toBe(m1.id);
    expect(cp.forPeer("n8", store.firstIndex())?.id).toBe(m2.id);
    // A checkpoint the log does not go on from is never chosen.
    expect(cp.forPeer("n9", m1.index + 5)?.id).toBe(m2.id);
    // Once n9 has it, the log after it stays a while (it installs), but a new offer starts from the newest.
    cp.delivered("n9");
    expect(cp.forPeer("n9", store.firstIndex())?.id).toBe(m2.id);
    grow(10);
    cp.maybeCompact();
    expect(store.firstIndex() - 1).toBe(m1.index);
  } finally {
    store.close();
  }
}, 30_000);

test("a build in progress holds the log at the applied index it started from, so the checkpoint it makes is one the log goes on from", async () => {
  const { store, grow, checkpointer } = await stoppedNode();
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const cp = checkpointer({
    log: new Logger({ level: "error" }),
    policy: { everyEntries: 0, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 0, compactEveryEntries: 1 },
    run: async (req) => {
      const r = buildCheckpointFile(req);
      await gate; // the build "takes long": writes and compaction go on meanwhile
      return r;
    },
  });
  try {
    const from = store.appliedIndex();
    expect(cp.requestBuild("a follower is behind")).toBe(true);
    grow(20);
    cp.maybeCompact();
    expect(store.firstIndex() - 1).toBe(from);
    release();
    const m = await waitFor("the build to finish", () => (!cp.busy ? cp.newest() : undefined), 5000, 5);
    expect(m.index).toBe(from);
    expect(cp.forPeer("n2", store.firstIndex())?.id).toBe(m.id);
    expect(cp.counts.built.peer).toBe(1);
    // Done: the hold is gone.
    cp.maybeCompact();
    expect(store.firstIndex() - 1).toBe(store.appliedIndex());
  } finally {
    store.close();
  }
}, 30_000);

test("feed retention past the newest checkpoint gets one built by the node's own (paced) policy, then trims below it: a 410 reader can load it", async () => {
  c = await inprocCluster(["n1"], { node: { retention: { keepEntries: 10, keepAgeMs: 0 }, checkpoints: { everyEntries: 0, everyMs: 0, logBytesMax: 0, keep: 2, trailingEntries: 5, compactEveryEntries: 10 } } });
  const n = await c.start("n1");
  await c.leader();
  for (let i = 0; i < 60; i++) await n.propose(put(i));
  const feed = await waitFor("the feed trimmed below a checkpoint", () => {
    const f = n.fsm.feedState();
    return f.first > 1 ? f : undefined;
  }, 40_000, 50);
  const newest = n.checkpoints()[0]!;
  expect(newest).toBeDefined();
  // Nothing trimmed that the newest checkpoint does not hold.
  expect(feed.first - 1).toBeLessThanOrEqual(newest.feedLast);
  expect(n.metricsText()).toMatch(/cairn_checkpoints_built_total\{reason="policy"\} [1-9]/);
  expect(c.logs.some((l) => l.includes("feed retention: trimmed"))).toBe(true);
}, 60_000);

/**
 * asyncStorageWrites (RaftConfig): advance() hands a Ready's entries to the
 * driver, persisted() reports them durable. The leader counts itself toward
 * the commit only then (thesis §10.2.1), entries in progress are not handed
 * out twice, only durable entries are applied, and a report for an entry a
 * newer append replaced is ignored.
 */
import { expect, test } from "bun:test";
import { MemoryStorage, Raft, SeededRng, type Ready } from "../../src/raft/index.ts";
import { CLUSTER, bootstrapStorage, bytes, msg } from "./harness.ts";

function node(storage: MemoryStorage, opts: { id?: string; applied?: number } = {}): Raft {
  return new Raft({ id: opts.id ?? "n1", clusterId: CLUSTER, storage, rng: new SeededRng(1), applied: opts.applied ?? 1, electionTicks: 10, heartbeatTicks: 1, asyncStorageWrites: true });
}

/** Takes a Ready, writes it to `storage` (durable at once here) and advances, without reporting it persisted. */
function take(r: Raft, storage: MemoryStorage): Ready {
  const rd = r.ready();
  if (rd.entries.length > 0) storage.append(rd.entries);
  if (rd.hardState) storage.setHardState(rd.hardState);
  r.advance(rd);
  return rd;
}

function report(r: Raft, rd: Ready): void {
  const last = rd.entries[rd.entries.length - 1];
  if (last) r.persisted({ index: last.index, term: last.term });
}

function lonelyLeader(): { r: Raft; s: MemoryStorage } {
  const s = bootstrapStorage(["n1"]);
  const r = node(s);
  r.campaign();
  for (let i = 0; i < 5 && r.hasReady(); i++) report(r, take(r, s));
  expect(r.role).toBe("leader");
  return { r, s };
}

test("a lone leader commits its entry only once persisted() reports it durable", () => {
  const { r, s } = lonelyLeader();
  const at = r.propose(bytes("x"));
  const rd = take(r, s);
  expect(rd.entries.map((e) => e.index)).toEqual([at.index]);
  expect(r.log.committed).toBeLessThan(at.index);
  report(r, rd);
  expect(r.log.committed).toBe(at.index);
});

test("entries handed out in a Ready are not handed out again before they are reported persisted", () => {
  const { r, s } = lonelyLeader();
  r.propose(bytes("x"));
  take(r, s);
  r.propose(bytes("y"));
  const second = take(r, s);
  expect(second.entries.map((e) => new TextDecoder().decode(e.data))).toEqual(["y"]);
});

test("committed entries are handed out to apply only once they are durable here", () => {
  const s = bootstrapStorage(["n1", "n2", "n3"]);
  const f = node(s, { id: "n2" });
  const ent = { index: 2, term: 2, kind: "normal" as const, data: bytes("x") };
  f.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: [ent], commit: 2 }));
  const rd = take(f, s);
  expect(rd.entries.length).toBe(1);
  expect(rd.committedEntries.some((e) => e.index === 2)).toBe(false); // committed, not yet durable here
  report(f, rd);
  expect(f.hasReady()).toBe(true);
  expect(f.ready().committedEntries.map((e) => e.index)).toContain(2);
});

test("a persisted() report for an entry that a newer append replaced is ignored", () => {
  const s = bootstrapStorage(["n1", "n2", "n3"]);
  const f = node(s, { id: "n2" });
  const old = { index: 2, term: 2, kind: "normal" as const, data: bytes("old") };
  f.step(msg({ type: "app", from: "n1", to: "n2", term: 2, index: 1, logTerm: 1, entries: [old], commit: 1 }));
  take(f, s);
  const replaced = { index: 2, term: 3, kind: "normal" as const, data: bytes("new") };
  f.step(msg({ type: "app", from: "n3", to: "n2", term: 3, index: 1, logTerm: 1, entries: [replaced], commit: 1 }));
  f.persisted({ index: 2, term: 2 }); // the first write completes: its entry is no longer the log's
  const rd = f.ready();
  expect(rd.entries.map((e) => `${e.index}/${e.term}`)).toEqual(["2/3"]); // still to be written
});

test("a restart whose applied index is beyond the stored commit (its write lost after the apply) starts committed there", () => {
  const s = bootstrapStorage(["n1", "n2", "n3"]);
  s.append([{ index: 2, term: 1, kind: "normal", data: bytes("x") }]);
  s.setHardState({ term: 1, vote: "", commit: 1 });
  const r = node(s, { id: "n2", applied: 2 });
  expect(r.log.committed).toBe(2);
});

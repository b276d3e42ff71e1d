/**
 * The driver's ordering contract (src/node/driver.ts): persist, then send,
 * then apply, then advance; a full disk stops a Ready before anything leaves;
 * "saved" waiters settle only after their entry is persisted. Real Raft cores
 * over MemoryStorage, a recorded fake clock and transport.
 */
import { expect, test } from "bun:test";
import { Driver, type DriverBugs, type DriverLog, type LogWrite } from "../../src/node/driver.ts";
import { DiskFullError } from "../../src/platform/sqlite.ts";
import { MemoryStorage, MESSAGE_DEFAULTS, Raft, SeededRng, type Message } from "../../src/raft/index.ts";
import { bootstrapStorage } from "../raft/harness.ts";

interface Rig {
  readonly drivers: Map<string, Driver>;
  readonly events: string[];
  readonly pool: Message[];
  readonly tasks: (() => void)[];
  diskFull: Set<string>;
  /** Asynchronous writes started and not yet durable (mode "async"). */
  readonly writes: ((() => void) & { readonly node?: string })[];
  run(): void;
  /** Makes every write in flight durable, in order. */
  completeWrites(): void;
  /** Makes the oldest write in flight of node `id` durable. */
  completeOne(id: string): void;
}

/** "parallel": the core with asyncStorageWrites and the driver's parallelAppends; "async": also a log store whose writes complete later. */
type Mode = "sync" | "parallel" | "async";

function rig(ids: string[], unsafe?: DriverBugs, mode: Mode = "sync", writesInFlightMax?: number): Rig {
  const r: Rig = { drivers: new Map(), events: [], pool: [], tasks: [], diskFull: new Set(), writes: [], run: () => undefined, completeWrites: () => undefined, completeOne: () => undefined };
  for (const id of ids) {
    const storage: MemoryStorage = bootstrapStorage(ids);
    const asyncStorageWrites = mode !== "sync";
    const raft = new Raft({ id, clusterId: "c", storage, rng: new SeededRng(ids.indexOf(id) + 1), applied: 1, electionTicks: 10, heartbeatTicks: 1, asyncStorageWrites });
    let applied = 1;
    const write = (w: LogWrite) => {
      if (r.diskFull.has(id)) throw new DiskFullError(`${id}.db`);
      if (w.entries.length > 0) storage.append(w.entries);
      if (w.hardState) storage.setHardState(w.hardState);
      r.events.push(`${id} persist hs=${w.hardState ? `${w.hardState.term}/${w.hardState.vote}` : "-"} n=${w.entries.length}`);
    };
    const d = new Driver({
      clock: { now: () => 0, defer: (fn) => r.tasks.push(fn), after: (fn) => r.tasks.push(fn) },
      parallelAppends: asyncStorageWrites,
      writesInFlightMax,
      log: {
        persist: write,
        persistAsync:
          mode !== "async"
            ? undefined
            : (w, done) => {
                r.events.push(`${id} write started n=${w.entries.length}`);
                // Like SQLite under WalSync: the write is in the store at once, durable later.
                write(w);
                const land = () => {
                  r.events.push(`${id} write durable n=${w.entries.length}`);
                  done();
                };
                r.writes.push(Object.assign(land, { node: id }));
              },
        firstIndex: () => storage.firstIndex(),
        lastIndex: () => storage.lastIndex(),
        term: (i) => storage.term(i),
      },
      transport: {
        send: (m) => {
          r.events.push(`${id} send ${m.type}`);
          r.pool.push(m);
          return true;
        },
        sendSnapshot: () => undefined,
        setClusterId: () => undefined,
      },
      fsm: {
        apply: (ents) => {
          for (const e of ents) if (e.index > applied) applied = e.index;
          if (ents.length > 0) r.events.push(`${id} apply ${ents[ents.length - 1]!.index}`);
          return new Map();
        },
      },
      snapshots: { install: () => undefined },
      hooks: {
        onAdvanced: () => r.events.push(`${id} advance commit=${raft.log.committed}`),
        onDiskFull: () => r.events.push(`${id} diskFull`),
        onFatal: (e) => {
          throw e;
        },
      },
      unsafe,
    });
    d.attach(raft);
    r.drivers.set(id, d);
  }
  r.completeWrites = () => {
    while (r.writes.length > 0) r.writes.shift()!();
  };
  r.completeOne = (id) => {
    const k = r.writes.findIndex((w) => w.node === id);
    if (k >= 0) r.writes.splice(k, 1)[0]!();
  };
  r.run = () => {
    for (let i = 0; i < 1000 && (r.tasks.length > 0 || r.pool.length > 0); i++) {
      while (r.tasks.length > 0) r.tasks.shift()!();
      const m = r.pool.shift();
      if (m) {
        const d = r.drivers.get(m.to)!;
        d.raft!.step(m);
        d.schedule();
      }
    }
  };
  return r;
}

/** The index in `events` of each node's Ready steps, per Ready: every persist precedes that Ready's sends. */
function persistBeforeSendViolations(events: string[]): string[] {
  const bad: string[] = [];
  const persistedSinceAdvance = new Map<string, boolean>();
  for (const ev of events) {
    const [id, what] = ev.split(" ") as [string, string];
    if (what === "persist") persistedSinceAdvance.set(id, true);
    else if (what.startsWith("advance")) persistedSinceAdvance.set(id, false);
    else if (what === "send" && persistedSinceAdvance.get(id) !== true) bad.push(ev);
  }
  return bad;
}

function elect(r: Rig): Driver {
  const d = r.drivers.get("n1")!;
  d.raft!.campaign();
  d.schedule();
  r.run();
  expect(d.raft!.role).toBe("leader");
  return d;
}

test("the driver persists a Ready before it sends, applies after it sends, and advances last", () => {
  const r = rig(["n1", "n2", "n3"]);
  const d = elect(r);
  d.raft!.propose(new TextEncoder().encode("x"));
  d.schedule();
  r.run();
  expect(persistBeforeSendViolations(r.events)).toEqual([]);
  // A voter's vote is durable before its answer leaves.
  const n2 = r.events.filter((e) => e.startsWith("n2 "));
  const voted = n2.findIndex((e) => e.includes("persist hs=") && !e.includes("hs=-"));
  expect(voted).toBeGreaterThanOrEqual(0);
  expect(n2[voted + 1]).toBe("n2 send voteResp");
  // On the leader, the Ready that applies the proposal applies after sending and advances after applying.
  const n1 = r.events.filter((e) => e.startsWith("n1 "));
  const apply = n1.findIndex((e) => e.startsWith("n1 apply"));
  expect(apply).toBeGreaterThan(0);
  expect(n1[apply + 1]).toStartWith("n1 advance");
});

test("the sendBeforePersist test switch breaks that order (the simulator's known driver bug)", () => {
  const r = rig(["n1", "n2", "n3"], { sendBeforePersist: true });
  elect(r);
  expect(persistBeforeSendViolations(r.events).length).toBeGreaterThan(0);
});

test("a full disk stops the Ready before anything is sent or applied, and the core is not advanced", () => {
  const r = rig(["n1", "n2", "n3"]);
  const d = elect(r);
  r.events.length = 0;
  r.diskFull.add("n1");
  d.raft!.propose(new TextEncoder().encode("x"));
  d.schedule();
  while (r.tasks.length > 0) r.tasks.shift()!();
  expect(r.events).toEqual(["n1 diskFull"]);
  expect(d.raft!.hasReady()).toBe(true); // the Ready was never advanced
});

test("a saved-entry waiter resolves only once its entry is persisted", async () => {
  const r = rig(["n1", "n2", "n3"]);
  const d = elect(r);
  const at = d.raft!.propose(new TextEncoder().encode("x"));
  let saved = false;
  const p = d.waitPersisted(at).then(() => (saved = true));
  await Promise.resolve();
  expect(saved).toBe(false);
  d.schedule();
  r.run();
  await p;
  expect(saved).toBe(true);
});

test("with parallelAppends the leader's append leaves before its own write; votes and append acks still wait for theirs", () => {
  const r = rig(["n1", "n2", "n3"], undefined, "parallel");
  const d = elect(r);
  r.events.length = 0;
  d.raft!.propose(new TextEncoder().encode("x"));
  d.schedule();
  r.run();
  const n1 = r.events.filter((e) => e.startsWith("n1 "));
  const sentApp = n1.indexOf("n1 send app");
  const wrote = n1.findIndex((e) => e.startsWith("n1 persist") && e.endsWith("n=1"));
  expect(sentApp).toBeGreaterThanOrEqual(0);
  expect(sentApp).toBeLessThan(wrote);
  // Everything but a leader's appends and heartbeats follows a write in the same Ready.
  expect(persistBeforeSendViolations(r.events.filter((e) => !e.endsWith("send app") && !e.endsWith("send heartbeat")))).toEqual([]);
});

test("a Ready that changes the term or vote sends nothing before its write, even with parallelAppends", () => {
  const r = rig(["n1", "n2", "n3"], undefined, "parallel");
  elect(r);
  expect(persistBeforeSendViolations(r.events.filter((e) => !e.endsWith("send app") && !e.endsWith("send heartbeat")))).toEqual([]);
  // The candidate's vote requests follow the write of its new term and self-vote.
  const n1 = r.events.filter((e) => e.startsWith("n1 "));
  expect(n1.indexOf("n1 send vote")).toBeGreaterThan(n1.findIndex((e) => e.startsWith("n1 persist hs=2/n1")));
});

test("a leader alone counts its own entry toward the commit only once its asynchronous write is durable", () => {
  const r = rig(["n1"], undefined, "async");
  const d = r.drivers.get("n1")!;
  d.raft!.campaign();
  d.schedule();
  for (let i = 0; i < 10; i++) {
    r.run();
    r.completeWrites();
  }
  r.run();
  expect(d.raft!.role).toBe("leader");
  const { index } = d.raft!.propose(new TextEncoder().encode("x"));
  d.schedule();
  r.run();
  expect(r.writes.length).toBe(1);
  expect(d.raft!.log.committed).toBeLessThan(index);
  expect(r.events.some((e) => e === `n1 apply ${index}`)).toBe(false);
  r.completeWrites();
  r.run();
  expect(d.raft!.log.committed).toBeGreaterThanOrEqual(index);
  r.completeWrites();
  r.run();
  expect(r.events).toContain(`n1 apply ${index}`);
});

function settleAsync(r: Rig): void {
  for (let i = 0; i < 20; i++) {
    r.run();
    r.completeWrites();
  }
  r.run();
}

function ackedBeforeDurable(unsafe?: DriverBugs): boolean {
  const { r, leader: d } = asyncFollower(undefined, unsafe);
  d.raft!.propose(new TextEncoder().encode("x"));
  d.schedule();
  // Writes stay in flight: the leader's append reaches the followers, whose writes do not complete.
  for (let i = 0; i < 5; i++) r.run();
  expect(r.events).toContain("n2 write started n=1");
  return r.events.includes("n2 send appResp");
}

test("with an asynchronous log store a follower acknowledges an append only once its write is durable", () => {
  expect(ackedBeforeDurable()).toBe(false);
});

test("the ackBeforeDurable test switch breaks that (the simulator's known driver bug)", () => {
  expect(ackedBeforeDurable({ ackBeforeDurable: true })).toBe(true);
});

/** A follower (n2) of a 3-node async rig with a leader elected and every write landed; events cleared. */
function asyncFollower(writesInFlightMax?: number, unsafe?: DriverBugs): { r: Rig; leader: Driver } {
  const r = rig(["n1", "n2", "n3"], unsafe, "async", writesInFlightMax);
  const leader = r.drivers.get("n1")!;
  leader.raft!.campaign();
  leader.schedule();
  settleAsync(r);
  expect(leader.raft!.role).toBe("leader");
  r.events.length = 0;
  return { r, leader };
}

/** Two proposals in two turns; the leader's writes land, those of n2 stay in flight. */
function twoAppends(r: Rig, leader: Driver): void {
  for (const v of ["a", "b"]) {
    leader.raft!.propose(new TextEncoder().encode(v));
    leader.schedule();
    for (let i = 0; i < 5; i++) {
      r.run();
      while (r.writes.some((w) => w.node === "n1")) r.completeOne("n1");
    }
  }
}

test("with an asynchronous log store the next Ready is taken while a write is in flight; its acknowledgement waits for every earlier write", () => {
  const { r, leader } = asyncFollower();
  twoAppends(r, leader);
  const n2 = r.events.filter((e) => e.startsWith("n2 "));
  // Both appends were written (pipelined) before either was durable, and nothing was acknowledged.
  expect(n2.filter((e) => e === "n2 write started n=1").length).toBe(2);
  expect(n2).not.toContain("n2 send appResp");
  expect(n2.some((e) => e.startsWith("n2 write durable"))).toBe(false);
  // The writes land in order: each acknowledgement follows its own write and every earlier one.
  r.completeWrites();
  r.run();
  const after = r.events.filter((e) => e.startsWith("n2 "));
  const acks = after.map((e, i) => (e === "n2 send appResp" ? i : -1)).filter((i) => i >= 0);
  const durable = after.map((e, i) => (e.startsWith("n2 write durable") ? i : -1)).filter((i) => i >= 0);
  expect(acks.length).toBeGreaterThanOrEqual(1);
  expect(durable.length).toBeGreaterThanOrEqual(2);
  expect(Math.min(...acks)).toBeGreaterThan(durable[0]!);
  settleAsync(r);
  expect(leader.raft!.log.committed).toBe(leader.raft!.log.lastIndex());
});

test("writesInFlightMax bounds the pipeline: at the bound the loop takes no Ready until the oldest write lands", () => {
  const { r, leader } = asyncFollower(1);
  const n2 = r.drivers.get("n2")!;
  twoAppends(r, leader);
  expect(n2.writesInFlight()).toBe(1);
  expect(r.events.filter((e) => e === "n2 write started n=1").length).toBe(1);
  r.completeOne("n2");
  r.run();
  expect(r.events.filter((e) => e.startsWith("n2 write started")).length).toBeGreaterThanOrEqual(2);
  settleAsync(r);
  expect(leader.raft!.log.committed).toBe(leader.raft!.log.lastIndex());
});

/** An asynchronous log store over MemoryStorage: each write is in the store at once, and its completion waits in `pending`. */
function asyncLog(storage: MemoryStorage, pending: ((err?: unknown) => void)[]): DriverLog {
  return {
    persist: () => {
      throw new Error("only persistAsync (and a snapshot install) is expected here");
    },
    persistAsync: (w, done) => {
      if (w.entries.length > 0) storage.append(w.entries);
      if (w.hardState) storage.setHardState(w.hardState);
      pending.push(done);
    },
    firstIndex: () => storage.firstIndex(),
    lastIndex: () => storage.lastIndex(),
    term: (i) => storage.term(i),
  };
}

test("a write that fails later for a full disk does not stall the loop: the core onDiskFull rebuilds takes Readies again", () => {
  const storage = bootstrapStorage(["n1"]);
  const pending: ((err?: unknown) => void)[] = [];
  const tasks: (() => void)[] = [];
  const core = () => new Raft({ id: "n1", clusterId: "c", storage, rng: new SeededRng(1), applied: 1, electionTicks: 10, heartbeatTicks: 1, asyncStorageWrites: true });
  const d: Driver = new Driver({
    clock: { now: () => 0, defer: (fn) => tasks.push(fn), after: (fn) => tasks.push(fn) },
    parallelAppends: true,
    log: asyncLog(storage, pending),
    transport: { send: () => true, sendSnapshot: () => undefined, setClusterId: () => undefined },
    fsm: { apply: () => new Map() },
    snapshots: { install: () => undefined },
    // As node.ts rebuildCore does: a new core from what the store holds.
    hooks: { onDiskFull: () => d.attach(core()), onFatal: (e) => { throw e; } },
  });
  const run = () => {
    while (tasks.length > 0) tasks.shift()!();
  };
  d.attach(core());
  d.raft!.campaign();
  d.schedule();
  run();
  expect(pending.length).toBe(1);
  pending.shift()!(new DiskFullError("n1.db")); // the write in flight fails after it started
  run();
  expect(d.writesInFlight()).toBe(0);
  d.raft!.campaign();
  d.schedule();
  run();
  expect(pending.length).toBe(1); // the new core's Ready was taken and its write started
});

test("a snapshot installed while an earlier write is in flight: its acknowledgement waits for that write, whose stale persisted() is then ignored", () => {
  const storage = bootstrapStorage(["n1", "n2", "n3"]);
  const pending: (() => void)[] = [];
  const tasks: (() => void)[] = [];
  const sent: Message[] = [];
  const raft = new Raft({ id: "n2", clusterId: "c", storage, rng: new SeededRng(2), applied: 1, electionTicks: 10, heartbeatTicks: 1, asyncStorageWrites: true });
  const d = new Driver({
    clock: { now: () => 0, defer: (fn) => tasks.push(fn), after: (fn) => tasks.push(fn) },
    parallelAppends: true,
    log: asyncLog(storage, pending),
    transport: {
      send: (m) => sent.push(m) > 0,
      sendSnapshot: () => undefined,
      setClusterId: () => undefined,
    },
    fsm: { apply: () => new Map() },
    // Synchronous, as the real install (a synchronous=FULL commit) is.
    snapshots: {
      install: (rd) => {
        storage.applySnapshot(rd.snapshot!);
        if (rd.hardState) storage.setHardState(rd.hardState);
      },
    },
    hooks: { onDiskFull: () => undefined, onFatal: (e) => { throw e; } },
  });
  d.attach(raft);
  const run = () => {
    while (tasks.length > 0) tasks.shift()!();
  };
  const from = { from: "n1", to: "n2", term: 2, cluster: "c", ...MESSAGE_DEFAULTS };
  const entry = (index: number) => ({ index, term: 2, kind: "normal" as const, data: new Uint8Array([index]) });
  raft.step({ ...from, type: "app", index: 1, logTerm: 1, entries: [entry(2), entry(3)], commit: 1 });
  d.schedule();
  run();
  expect(pending.length).toBe(1); // entries 2..3 in flight
  const conf = { voters: ["n1", "n2", "n3"], votersOutgoing: [], learners: [], learnersNext: [] };
  raft.step({ ...from, type: "snap", snapshot: { index: 10, term: 2, conf } });
  d.schedule();
  run();
  expect(storage.snapshotMeta().index).toBe(10); // installed at once
  expect(sent.filter((m) => m.type === "appResp")).toEqual([]); // but not acknowledged before 2..3 are durable
  pending.shift()!();
  run();
  expect(sent.filter((m) => m.type === "appResp").map((m) => m.index)).toEqual([3, 10]);
  expect(raft.log.lastIndex()).toBe(10);
  expect(raft.log.committed).toBe(10);
  expect(d.writesInFlight()).toBe(0);
});

test("with an asynchronous log store a full disk stops a leader's Ready before its appends leave (the writers are told the write was not made)", () => {
  const { r, leader: d } = asyncFollower();
  r.diskFull.add("n1");
  d.raft!.propose(new TextEncoder().encode("x"));
  d.schedule();
  while (r.tasks.length > 0) r.tasks.shift()!();
  expect(r.events.filter((e) => e.startsWith("n1 "))).toEqual(["n1 write started n=1", "n1 diskFull"]);
  expect(r.pool.filter((m) => m.from === "n1" && m.entries.length > 0)).toEqual([]);
});

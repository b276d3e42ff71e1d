/**
 * Availability under network faults (issue 9), on real processes of
 * dist/cairn. Faults come from the transport's test-only fault hook
 * (CAIRN_TEST_FAULTS, src/transport/faults.ts): frames are lost the way TCP
 * loses segments (head-of-line blocking, retransmission after an RTO that
 * doubles), so a connection that lived through a long cut stays silent after
 * the heal, as a real one does. Real kill -9 and SIGSTOP otherwise.
 */
import { afterEach, expect, test } from "bun:test";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, expectFeedsAgree, firstWriteVia, Writer } from "./harness.ts";

const HEARTBEAT_MS = 100;
const ELECTION_MS = 1000;
/** The requirement: a healed or restarted node serves again within 2 election timeouts. */
const BACK_MS_MAX = 2 * ELECTION_MS;
const IDS = ["n1", "n2", "n3"];

let c: E2ECluster | undefined;
let writers: Writer[] = [];
afterEach(async () => {
  await Promise.all(writers.map((w) => w.stop(0)));
  writers = [];
  await c?.close();
  c = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Link {
  from: string;
  to: string;
  loss: number;
}

function faultsFile(cl: E2ECluster): string {
  return join(cl.dir, "faults.json");
}

/** Replaces the fault rules (atomically: the nodes poll the file). */
function setFaults(cl: E2ECluster, links: Link[]): void {
  const tmp = `${faultsFile(cl)}.tmp`;
  writeFileSync(tmp, JSON.stringify({ links }));
  renameSync(tmp, faultsFile(cl));
}

/** Every link between `id` and the other nodes, both ways, with `loss`. */
function isolate(id: string, loss = 1): Link[] {
  return IDS.filter((o) => o !== id).flatMap((o) => [
    { from: id, to: o, loss },
    { from: o, to: id, loss },
  ]);
}

async function startThree(): Promise<E2ECluster> {
  const cl = await E2ECluster.init(3, (f) => {
    f.raft = { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS };
  });
  setFaults(cl, []);
  for (const id of IDS) cl.start(id, { env: { CAIRN_TEST_FAULTS: faultsFile(cl) } });
  await cl.waitVoters(3);
  return cl;
}

test("a follower cut off for 20 s serves a write within 2 election timeouts of the heal", async () => {
  c = await startThree();
  const leader = await c.leader();
  const cut = IDS.find((id) => id !== leader)!;
  await firstWriteVia(c, cut, { timeoutMs: 5000 });
  setFaults(c, isolate(cut));
  await sleep(20_000); // holds the cut for the 20 s the test is about
  // The majority kept serving meanwhile.
  await firstWriteVia(c, leader, { timeoutMs: 5000 });
  const healedAt = performance.now();
  setFaults(c, []);
  const backMs = (await firstWriteVia(c, cut, { timeoutMs: 30_000 })) - healedAt;
  console.log(`cut 20 s: ${cut} served a write ${Math.round(backMs)} ms after the heal`);
  expect(backMs).toBeLessThan(BACK_MS_MAX);
}, 60_000);

test("a node killed with -9 and restarted after the leader's redial backoff has grown rejoins within 2 election timeouts", async () => {
  c = await startThree();
  const leader = await c.leader();
  const victim = IDS.find((id) => id !== leader)!;
  const w = new Writer(c, { via: () => [leader], clients: 2 }).start();
  writers.push(w);
  await c.signal(victim, "SIGKILL");
  // The leader keeps dialling the dead node: with the old 5 s cap its backoff is long grown by now.
  await sleep(12_000); // a duration: the redial backoff grows while the node is down
  c.start(victim, { env: { CAIRN_TEST_FAULTS: faultsFile(c) } });
  const upAt = await waitFor("the restarted node's API", async () => ((await c!.status(victim)) ? performance.now() : undefined), 20_000, 20);
  const backMs = (await firstWriteVia(c, victim, { timeoutMs: 30_000, writer: w })) - upAt;
  console.log(`kill -9 + restart: ${victim} served a write ${Math.round(backMs)} ms after its API came up`);
  expect(backMs).toBeLessThan(BACK_MS_MAX);
  await w.stop();
  await expectFeedsAgree(c, IDS, w);
}, 60_000);

test("under 20% loss on every link writes keep committing, and after it the cluster is back within 2 election timeouts", async () => {
  c = await startThree();
  const w = new Writer(c, { via: () => IDS, clients: 4, attemptTimeoutMs: 1000 }).start();
  writers.push(w);
  await w.more(20);
  const from = performance.now();
  setFaults(c, [{ from: "*", to: "*", loss: 0.2 }]);
  await sleep(25_000); // holds the loss for the 25 s the test measures
  const to = performance.now();
  setFaults(c, []);
  const gapMs = w.maxGapMs(from, to);
  const during = w.acks.filter((a) => a.at >= from && a.at <= to).length;
  const backAt = await Promise.all(IDS.map((id) => firstWriteVia(c!, id, { timeoutMs: 30_000, writer: w })));
  const backMs = Math.max(...backAt) - to;
  console.log(`20% loss for 25 s: ${during} writes, longest gap ${Math.round(gapMs)} ms; every node writable ${Math.round(backMs)} ms after`);
  expect(during).toBeGreaterThan(0);
  expect(gapMs).toBeLessThan(5000);
  expect(backMs).toBeLessThan(BACK_MS_MAX);
  await w.stop();
  await expectFeedsAgree(c, IDS, w);
}, 90_000);

/** Resident set of node `id`'s process, in MiB (/proc/PID/status VmRSS). */
function rssMiB(cl: E2ECluster, id: string): number {
  const pid = cl.procs.get(id)?.child.pid;
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for ${id} (pid ${pid})`);
  return Number(m[1]) / 1024;
}

/**
 * `clients` loops posting `entryBytes`-sized changes through `id` until stop() (no retries: load
 * only), each at most one write per `paceMs`: a steady rate keeps the leader's garbage (and so its
 * RSS) steady, so that what a catch-up adds shows.
 */
function padLoad(cl: E2ECluster, id: string, opts: { clients: number; entryBytes: number; paceMs: number }): { count(): number; stop(): Promise<void> } {
  const { clients, entryBytes, paceMs } = opts;
  const pad = "x".repeat(entryBytes);
  let acked = 0;
  let stopping = false;
  const loop = async (k: number): Promise<void> => {
    for (let s = 0; !stopping; s++) {
      const started = performance.now();
      try {
        const r = await cl.json(id, "/changes", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ data: { k, s, pad }, tags: [] }),
          signal: AbortSignal.timeout(3000),
        });
        if (r.status === 200 || r.status === 201) acked++;
      } catch {
        // Load only: a failed write is not retried.
      }
      await sleep(Math.max(0, paceMs - (performance.now() - started)));
    }
  };
  const loops = [...Array(clients).keys()].map(loop);
  return { count: () => acked, stop: async () => ((stopping = true), void (await Promise.all(loops))) };
}

const ENTRY_BYTES = 2000;
const CATCH_UP_MS_MAX = 20_000;

test("a follower stopped until thousands of entries behind is caught up from the log: no leadership change, no stall (leader RSS printed)", async () => {
  c = await startThree();
  const leader = await c.leader();
  const victim = IDS.find((id) => id !== leader)!;
  // A moderate load: the leader's RSS already swings by tens of MiB with the garbage of a heavy one.
  const load = padLoad(c, leader, { clients: 8, entryBytes: ENTRY_BYTES, paceMs: 25 });
  try {
    await waitFor("load running", () => load.count() >= 500, 30_000);
    let before = 0;
    for (let t0 = performance.now(); performance.now() - t0 < 3000; await sleep(50)) before = Math.max(before, rssMiB(c, leader));
    const termBefore = (await c.status(leader)).term;
    await c.signal(victim, "SIGSTOP");
    const n0 = load.count();
    await sleep(12_000); // holds the SIGSTOP while the load runs: the victim falls behind by this long
    const behind = load.count() - n0;
    await c.signal(victim, "SIGCONT");
    const resumed = performance.now();
    const target = (await c.status(leader)).index.commit;
    let peak = before;
    let caughtMs = -1;
    while (caughtMs < 0 && performance.now() - resumed < CATCH_UP_MS_MAX) {
      peak = Math.max(peak, rssMiB(c, leader));
      const st = await c.status(victim).catch(() => null);
      if (st && st.index.applied >= target) caughtMs = performance.now() - resumed;
      await sleep(50);
    }
    for (const t1 = performance.now(); performance.now() - t1 < 2000; await sleep(50)) peak = Math.max(peak, rssMiB(c, leader));
    const st = await c.status(leader);
    console.log(`catch-up of ${behind} entries (~${Math.round((behind * ENTRY_BYTES) / 2 ** 20)} MiB): leader RSS ${Math.round(before)} -> peak ${Math.round(peak)} MiB, caught up in ${Math.round(caughtMs)} ms, term ${termBefore} -> ${st.term}`);
    expect(behind).toBeGreaterThan(1000);
    expect(caughtMs).toBeGreaterThanOrEqual(0);
    // The leader's RSS (printed above) is a figure, not an assertion: memory targets are met in
    // benchmarks, never in timed tests (its RSS swings by tens of MiB with the write load's garbage,
    // and a CI run measured +64.5 MiB once). What bounds catch-up memory is checked deterministically
    // in test/raft/flowcontrol.test.ts (bytes in flight per follower, no probe copies).
    expect(st.term).toBe(termBefore);
    expect(st.leader?.id).toBe(leader);
    expect(c.allLogs(leader).filter((l) => /stall/i.test(l.msg ?? ""))).toEqual([]);
  } finally {
    await load.stop();
  }
}, 90_000);

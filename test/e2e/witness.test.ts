/**
 * Two data nodes and a witness (cluster file "role": "witness", README
 * "Witness") on real processes of dist/cairn: the loss of any one of the
 * three (kill -9) loses no acknowledged write, writes resume within 2
 * election timeouts and the survivors serve linearizable reads; and the
 * case the witness rule exists for: an entry acknowledged by the leader and
 * the witness alone (the other data node SIGSTOPped), the leader killed, the
 * other data node resumed gets it from the witness.
 */
import { afterEach, expect, test } from "bun:test";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, expectFeedsAgree, firstWriteVia, Writer } from "./harness.ts";

const HEARTBEAT_MS = 100;
const ELECTION_MS = 1000;
const RESUME_MS_MAX = 2 * ELECTION_MS;
const IDS = ["n1", "n2", "n3"];
const DATA = ["n1", "n2"];
const WITNESS = "n3";

let c: E2ECluster | undefined;
let writers: Writer[] = [];
afterEach(async () => {
  await Promise.all(writers.map((w) => w.stop(0)));
  writers = [];
  await c?.close();
  c = undefined;
});

async function startWithWitness(): Promise<E2ECluster> {
  const cl = await E2ECluster.init(3, (f) => {
    f.raft = { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS };
    f.nodes.find((n) => n.id === WITNESS)!.role = "witness";
  });
  for (const id of IDS) cl.start(id);
  await waitMembers(cl);
  return cl;
}

/** Every node is a voter (the witness one too), the configuration is not joint, and the leader is a data node. */
async function waitMembers(cl: E2ECluster, timeoutMs = 30_000): Promise<string> {
  return await waitFor(
    "2 data voters and a witness voter, led by a data node",
    async () => {
      const l = await cl.leader(timeoutMs);
      const st = await cl.status(l);
      const roles = Object.fromEntries(st.members.map((m: { id: string; role: string }) => [m.id, m.role]));
      return DATA.includes(l) && roles.n1 === "voter" && roles.n2 === "voter" && roles.n3 === "witness" && !st.joint ? l : undefined;
    },
    timeoutMs,
    100,
  );
}

/** A linearizable read (the default consistency) answered by `id`. */
async function linearizableRead(cl: E2ECluster, id: string): Promise<void> {
  await waitFor(
    `a linearizable read on ${id}`,
    async () => (await cl.json(id, "/changes?since=0&limit=1", { signal: AbortSignal.timeout(1000) }).catch(() => ({ status: 0 }))).status === 200,
    10_000,
    50,
  );
}

async function caughtUp(cl: E2ECluster, id: string, leader: string): Promise<void> {
  await waitFor(
    `${id} caught up with ${leader}`,
    async () => {
      const [a, b] = await Promise.all([cl.status(id), cl.status(leader)]);
      return a.index.commit >= b.index.commit && a.leader?.id === leader;
    },
    30_000,
    100,
  );
}

test("the witness answers client data requests with 421 naming the data nodes; /status, /health and /metrics work; it holds no data", async () => {
  c = await startWithWitness();
  const leader = await c.leader();
  expect((await c.post(leader, { x: 1 })).status).toBeLessThan(300);
  for (const [method, path] of [["GET", "/changes?since=0"], ["POST", "/changes"], ["GET", "/kv/a"], ["PUT", "/kv/a"], ["POST", "/txn"], ["GET", "/checkpoints"]] as const) {
    const r = await c.json(WITNESS, path, { method, headers: { "content-type": "application/json" }, body: method === "GET" ? undefined : "{}" });
    expect(r.status).toBe(421);
    expect(r.body.error.code).toBe("witness");
    expect(r.body.dataNodes.map((d: { id: string }) => d.id)).toEqual(DATA);
  }
  const st = await c.status(WITNESS);
  expect(st.leader.id).toBe(leader);
  expect(st.feed.last).toBe(0);
  expect(st.index.applied).toBeGreaterThan(1);
  expect((await c.get(WITNESS, "/health")).status).toBe(200);
  expect(await (await c.get(WITNESS, "/metrics")).text()).toContain("cairn_raft_");
}, 60_000);

test("kill -9 of each of the three in turn under a writer: writes resume within 2 election timeouts, survivors serve linearizable reads, every acknowledged write is on both data nodes", async () => {
  c = await startWithWitness();
  let via = [...DATA];
  const w = new Writer(c, { via: () => via, clients: 3, attemptTimeoutMs: 1000 }).start();
  writers.push(w);
  await w.more(30);
  for (const kind of ["leader", "data follower", "witness"] as const) {
    const leader = await waitMembers(c);
    const victim = kind === "leader" ? leader : kind === "witness" ? WITNESS : DATA.find((d) => d !== leader)!;
    via = DATA.filter((d) => d !== victim);
    const survivors = IDS.filter((id) => id !== victim);
    await w.more(20);
    const killedAt = performance.now();
    await c.signal(victim, "SIGKILL");
    const resumeMs = (await firstWriteVia(c, via[0]!, { timeoutMs: 20_000, writer: w })) - killedAt;
    console.log(`kill -9 of ${victim} (${kind}): writes resumed after ${Math.round(resumeMs)} ms`);
    expect(resumeMs).toBeLessThan(RESUME_MS_MAX);
    await w.more(20);
    for (const id of survivors.filter((s) => s !== WITNESS)) await linearizableRead(c, id);
    c.start(victim);
    via = [...DATA];
    const l = await waitMembers(c);
    await caughtUp(c, victim, l);
  }
  await w.stop();
  expect(w.unsettled.size).toBeLessThan(w.acks.length);
  const { length } = await expectFeedsAgree(c, DATA, w);
  console.log(`kill -9 of each: ${w.summary()}; ${length} changes on both data nodes`);
}, 180_000);

test("leader + witness acknowledged, the other data node stopped, leader killed: the resumed data node gets every entry from the witness", async () => {
  c = await startWithWitness();
  const d1 = await c.leader();
  const d2 = DATA.find((d) => d !== d1)!;
  const w = new Writer(c, { via: () => [d1], clients: 3, attemptTimeoutMs: 1000 }).start();
  writers.push(w);
  await w.more(20);
  await c.signal(d2, "SIGSTOP");
  const before = w.count();
  // Committed by d1 and the witness alone: d2 sees none of these. More than the witness's
  // compaction step (256 entries), so a witness that compacted what d2 lacks would be caught.
  await w.more(400, 60_000);
  await c.signal(d1, "SIGKILL");
  await w.stop(0);
  const onlyOnD1AndWitness = w.acks.length - before;
  await c.signal(d2, "SIGCONT");
  const contAt = performance.now();
  // The witness holds entries d2 lacks: it wins the election, brings d2 up to date and hands it leadership.
  await waitFor(`${d2} to lead`, async () => ((await c!.leader(20_000, [d2, WITNESS])) === d2 ? true : undefined), 20_000, 50);
  const handOffMs = performance.now() - contAt;
  const w2 = new Writer(c, { via: () => [d2], clients: 2, name: "after", attemptTimeoutMs: 1000 }).start();
  writers.push(w2);
  await w2.more(10);
  await linearizableRead(c, d2);
  const witnessLed = c.logsMatching(WITNESS, /leader is n3 \(this node\)/).length;
  console.log(`${onlyOnD1AndWitness} writes acknowledged by ${d1} + the witness alone; the witness led ${witnessLed} time(s) before handing over to ${d2}, which led ${Math.round(handOffMs)} ms after SIGCONT`);
  expect(witnessLed).toBeGreaterThanOrEqual(1);
  expect(onlyOnD1AndWitness).toBeGreaterThanOrEqual(400);
  c.start(d1);
  await waitMembers(c);
  await w2.stop();
  await expectFeedsAgree(c, DATA, [w, w2]);
}, 120_000);

test("a witness that was down while the data nodes compacted takes the offered checkpoint's position without downloading it", async () => {
  c = await E2ECluster.init(3, (f) => {
    f.raft = { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS };
    f.nodes.find((n) => n.id === WITNESS)!.role = "witness";
  });
  const ckpt = ["--checkpoint-every", "50", "--checkpoint-trailing", "0"];
  for (const id of DATA) c.start(id, { args: ckpt });
  c.start(WITNESS);
  const leader = await waitMembers(c);
  const w = new Writer(c, { via: () => DATA, clients: 3 }).start();
  writers.push(w);
  await w.more(10);
  await c.signal(WITNESS, "SIGKILL");
  const witnessLast = (await c.status(leader)).members.find((m: { id: string }) => m.id === WITNESS).match as number;
  await waitFor(
    "the data leader to compact past the witness",
    async () => (await c!.status(leader)).index.first > witnessLast + 1,
    60_000,
    200,
  );
  c.start(WITNESS);
  await c.waitLog(WITNESS, /took the position of checkpoint/, 30_000);
  await caughtUp(c, WITNESS, await c.leader());
  const st = await c.status(WITNESS);
  expect(st.index.first).toBeGreaterThan(witnessLast + 1);
  expect(st.feed.last).toBe(0);
  // No checkpoint file on the witness: it never downloaded one.
  expect(c.logsMatching(WITNESS, /installed checkpoint/).length).toBe(0);
  await w.stop();
  await expectFeedsAgree(c, DATA, w);
}, 120_000);

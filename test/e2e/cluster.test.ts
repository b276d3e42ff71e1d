/**
 * Three processes of the built binary with certificates from `cairn init`:
 * the cluster forms, takes writes on any node, survives kill -9 of the
 * leader, and loses nothing it acknowledged.
 */
import { afterEach, expect, test } from "bun:test";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster } from "./harness.ts";

let c: E2ECluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

async function startThree(): Promise<E2ECluster> {
  const cl = await E2ECluster.init(3);
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  return cl;
}

/** Every node holds exactly `acked`, once each, in the same order. */
async function expectSameFeed(cl: E2ECluster, ids: string[], acked: Map<number, unknown>): Promise<void> {
  const feeds = await Promise.all(ids.map((id) => waitFor(`${id} caught up`, async () => {
    const f = await cl.feed(id);
    return f.length >= acked.size ? f : undefined;
  }, 20_000)));
  for (const f of feeds) {
    expect(f.map((ch) => ch.index)).toEqual(feeds[0]!.map((ch) => ch.index));
    expect(f.map((ch) => JSON.stringify(ch.data))).toEqual(feeds[0]!.map((ch) => JSON.stringify(ch.data)));
    for (const [index, data] of acked) expect(f.find((ch) => ch.index === index)?.data).toEqual(data);
    const seen = new Set(f.map((ch) => JSON.stringify(ch.data)));
    expect(seen.size).toBe(f.length);
  }
}

test("a leader is elected; writes through each node are committed and readable from every node", async () => {
  c = await startThree();
  const acked = new Map<number, unknown>();
  for (const id of ["n1", "n2", "n3"]) {
    for (let i = 0; i < 5; i++) {
      const data = { via: id, i };
      const r = await c.post(id, data, { tags: ["e2e"] });
      expect(r.status).toBe(201);
      acked.set(r.body.index, data);
    }
  }
  for (const id of ["n1", "n2", "n3"]) {
    const r = await c.json(id, "/changes?since=0&limit=100");
    expect(r.status).toBe(200);
    expect(r.body.changes.length).toBe(15);
  }
  await expectSameFeed(c, ["n1", "n2", "n3"], acked);
}, 60_000);

test("kill -9 of the leader: another is elected, writes go on, the old leader catches up; nothing acknowledged is lost", async () => {
  c = await startThree();
  const acked = new Map<number, unknown>();
  let seq = 0;
  const write = async (id: string) => {
    const data = { seq: seq++ };
    const r = await c!.post(id, data, { key: `k${data.seq}` });
    if (r.status === 201) acked.set(r.body.index, data);
    return r.status;
  };
  for (let i = 0; i < 20; i++) await write("n1");
  const old = await c.leader();
  const survivors = ["n1", "n2", "n3"].filter((id) => id !== old);
  const killedAt = performance.now();
  await c.signal(old, "SIGKILL");
  // Keep writing through a survivor until one succeeds: the time to the first successful write.
  await waitFor("a write after the leader's death", async () => (await write(survivors[0]!)) === 201, 20_000, 10);
  const recoveryMs = performance.now() - killedAt;
  console.log(`kill -9 of leader ${old}: first successful write after ${Math.round(recoveryMs)} ms`);
  for (let i = 0; i < 20; i++) expect(await write(survivors[i % 2]!)).toBe(201);
  c.start(old);
  await expectSameFeed(c, ["n1", "n2", "n3"], acked);
  expect(acked.size).toBe(41);
}, 90_000);

test("a full stop and restart of all nodes keeps everything", async () => {
  c = await startThree();
  const acked = new Map<number, unknown>();
  for (let i = 0; i < 30; i++) {
    const r = await c.post(["n1", "n2", "n3"][i % 3]!, { i });
    expect(r.status).toBe(201);
    acked.set(r.body.index, { i });
  }
  const put = await c.json("n2", "/kv/config%2Fa", { method: "PUT", body: "x", headers: { "content-type": "text/plain" } });
  expect([200, 201]).toContain(put.status);
  for (const id of ["n1", "n2", "n3"]) await c.signal(id, "SIGKILL");
  for (const id of ["n1", "n2", "n3"]) c.start(id);
  await c.leader();
  await expectSameFeed(c, ["n1", "n2", "n3"], acked);
  const got = await c.get("n3", "/kv/config%2Fa");
  expect(got.status).toBe(200);
  expect(await got.text()).toBe("x");
  const r = await c.post("n1", { after: "restart" });
  expect(r.status).toBe(201);
  expect(r.body.index).toBeGreaterThan(31);
}, 90_000);

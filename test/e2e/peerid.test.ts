/**
 * Peer identity against a real 3-node cluster of the built binary (TLS from
 * `cairn init`): a certificate of the cluster CA is not enough to take part.
 * A node id that is neither in the Raft configuration nor in the cluster file
 * (a stranger, or a node just removed) is refused at the handshake, so its
 * higher-term heartbeats and forwarded writes never reach anything; a member
 * whose certificate is revoked in the file loses its connections at once.
 */
import { afterEach, expect, test } from "bun:test";
import { encodeCommand } from "../../src/statemachine/commands.ts";
import type { PeerTls } from "../../src/transport/context.ts";
import { PeerTransport } from "../../src/transport/transport.ts";
import { loadX509 } from "../../src/transport/x509.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster } from "./harness.ts";

const IDS = ["n1", "n2", "n3"];

let c: E2ECluster | undefined;
const transports: PeerTransport<unknown>[] = [];

afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
  await c?.close();
  c = undefined;
});

async function startThree(): Promise<E2ECluster> {
  const cl = await E2ECluster.init(3);
  for (const id of IDS) cl.start(id);
  await cl.waitVoters(3);
  return cl;
}

/** Leader and term as every node in `ids` reports them. */
async function leaderAndTerm(cl: E2ECluster, ids: string[]): Promise<{ leader: string; term: number }> {
  const leader = await cl.leader(20_000, ids);
  return { leader, term: (await cl.status(leader)).term as number };
}

function heartbeat(from: string, to: string, term: number, cluster: string): unknown {
  return {
    t: "raft",
    m: { type: "heartbeat", from, to, term, cluster, index: 0, logTerm: 0, entries: [], commit: 0, commitTerm: 0, reject: false, rejectHint: 0, context: "" },
  };
}

function forwardedWrite(id: number, from: string): unknown {
  const cmd = encodeCommand({ op: "changes", ts: Date.now(), items: [{ data: { intruder: from, n: id }, tags: [] }] });
  return { t: "fwd", id, cmd, wait: "applied" };
}

/**
 * For `ms`: as node `as` (with `material`), sends every node in `targets`, every 150 ms, a heartbeat
 * 50 terms ahead and a forwarded write. Returns what came back and the intruder's log.
 */
async function intrude(cl: E2ECluster, o: { as: string; material: PeerTls; targets: string[]; clusterId: string; term: number; ms: number }): Promise<{ received: unknown[]; lines: string[] }> {
  const { log, lines } = memoryLogger("debug");
  const received: unknown[] = [];
  const t = new PeerTransport<unknown>({
    nodeId: o.as,
    clusterId: o.clusterId,
    listen: { host: "127.0.0.1", port: 0 },
    tls: o.material,
    logger: log.with({ node: o.as }),
    onMessage: (_from, p) => received.push(p),
    backoffMsMin: 50,
    backoffMsMax: 100,
  });
  transports.push(t);
  await t.listen();
  t.setPeers(new Map(o.targets.map((id) => [id, cl.peer(id)])));
  const until = Date.now() + o.ms;
  for (let i = 1; Date.now() < until; i++) {
    for (const id of o.targets) {
      t.send(id, heartbeat(o.as, id, o.term + 50, o.clusterId));
      t.send(id, forwardedWrite(i, o.as));
    }
    await new Promise((r) => setTimeout(r, 150)); // paces the intruder's sends, not a wait for a condition
  }
  return { received, lines };
}

/** Nothing the intruder sent took effect: same leader and term everywhere, no forwarded write in any feed. */
async function expectUndisturbed(cl: E2ECluster, ids: string[], before: { leader: string; term: number }, intruder: string): Promise<void> {
  for (const id of ids) {
    const st = await cl.status(id);
    expect({ id, term: st.term, leader: st.leader?.id }).toEqual({ id, term: before.term, leader: before.leader });
  }
  const r = await cl.post(before.leader, { after: "intruder" });
  expect(r.status).toBe(201);
  for (const id of ids) {
    const feed = await cl.feed(id);
    expect(feed.filter((ch) => ch.data?.intruder === intruder)).toEqual([]);
  }
}

async function refusedMetric(cl: E2ECluster, id: string, reason: string): Promise<number> {
  const text = await (await cl.get(id, "/metrics")).text();
  const m = new RegExp(`^cairn_peer_refused_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : -1;
}

test("a certificate of the cluster CA for a node not in the file (n4) is refused: its higher-term heartbeats and forwarded writes change nothing", async () => {
  c = await startThree();
  const before = await leaderAndTerm(c, IDS);
  const clusterId: string = (await c.status(before.leader)).clusterId;

  const got = await intrude(c, { as: "n4", material: await c.issueTls("n4"), targets: IDS, clusterId, term: before.term, ms: 3000 });

  expect(got.received).toEqual([]);
  await expectUndisturbed(c, IDS, before, "n4");
  for (const id of IDS) {
    const line = c.logsMatching(id, "refused peer connection").find((l) => l.peer === "n4" && l.kind === "notAdmitted");
    expect(String(line?.msg)).toContain("node n4 is not a member of the Raft configuration");
    expect(String(line?.msg)).toContain(`not listed in cluster file ${c.file}`);
    expect(await refusedMetric(c, id, "notMember")).toBeGreaterThanOrEqual(1);
  }
  // The intruder is told why.
  expect(got.lines.some((l) => l.includes("peer refused the connection") && l.includes("not a member"))).toBe(true);
}, 60_000);

test("a removed node's certificate stops working once the removal is applied and the file no longer lists it", async () => {
  c = await startThree();
  const first = await leaderAndTerm(c, IDS);
  const gone = IDS.find((id) => id !== first.leader)!;
  const rest = IDS.filter((id) => id !== gone);
  const material = c.nodeTls(gone);
  c.editFile((f) => (f.nodes = f.nodes.filter((n) => n.id !== gone)));
  await waitFor(
    `${gone} out of the configuration`,
    async () => {
      const st = await c!.status(await c!.leader(20_000, rest));
      return !st.members.some((m: { id: string }) => m.id === gone);
    },
    30_000,
    100,
  );
  // Its open connection to the leader (it was answering heartbeats) is closed the moment the removal applies.
  const closed = await c.waitLog(first.leader, `closed peer connection: node ${gone} is not a member`, 10_000);
  expect(closed.peer).toBe(gone);
  await c.stop(gone);
  const before = await leaderAndTerm(c, rest);
  const clusterId: string = (await c.status(before.leader)).clusterId;

  const got = await intrude(c, { as: gone, material, targets: rest, clusterId, term: before.term, ms: 3000 });

  expect(got.received).toEqual([]);
  await expectUndisturbed(c, rest, before, gone);
  for (const id of rest) {
    const line = c.logsMatching(id, "refused peer connection").find((l) => l.peer === gone && l.kind === "notAdmitted");
    expect(String(line?.msg)).toContain(`node ${gone} is not a member of the Raft configuration`);
  }
}, 90_000);

test("revoking a member's certificate serial in the cluster file closes its connections at once; the others keep their leader and term", async () => {
  c = await startThree();
  const first = await leaderAndTerm(c, IDS);
  const victim = IDS.find((id) => id !== first.leader)!;
  const rest = IDS.filter((id) => id !== victim);
  const x509 = await loadX509();
  const serial: string = new x509.X509Certificate(c.nodeTls(victim).cert).serialNumber;
  // As an operator might paste it from `openssl x509 -serial`: lower case, with colons.
  const written = serial.toLowerCase().replace(/(..)(?=.)/g, "$1:");
  c.editFile((f) => Object.assign(f, { revoked: [written] }));

  // The leader had connections both ways with it (followers need not talk to each other).
  const line = await c.waitLog(first.leader, /closed peer connection: the certificate of node n\d \(serial [0-9A-F]+\) is revoked/, 10_000);
  expect(line.peer).toBe(victim);
  expect(String(line.msg)).toContain(serial.toUpperCase());
  await waitFor("the revoked node hears why", () => c!.logs(victim).some((l) => l.includes("peer refused the connection") && l.includes("revoked")));
  await waitFor("the leader's connection to the revoked node down", async () => {
    const text = await (await c!.get(first.leader, "/metrics")).text();
    return text.includes(`cairn_peer_connected{peer="${victim}"} 0`);
  });
  // It keeps trying (campaigning with higher terms); it is refused every time, and nothing moves.
  await new Promise((r) => setTimeout(r, 2000)); // let its election timeouts (500 ms) pass several times
  const now = await leaderAndTerm(c, rest);
  expect(now).toEqual(first);
  expect(await refusedMetric(c, first.leader, "revoked")).toBeGreaterThanOrEqual(1);
  expect((await c.post(first.leader, { still: "serving" })).status).toBe(201);
}, 60_000);

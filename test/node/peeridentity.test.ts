/**
 * Same class as the transport's admission rule, one level up: what a peer
 * sends on behalf of another node is not taken as that node's.
 */
import { afterEach, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { PeerCalls } from "../../src/node/peer.ts";
import { PeerTransport } from "../../src/transport/transport.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { inprocCluster, waitStableVoters, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

let c: InprocCluster | undefined;
const transports: PeerTransport<unknown>[] = [];
afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
  await c?.close();
  c = undefined;
});

test("an answer to a request counts only from the peer it was sent to", async () => {
  const calls = new PeerCalls(10);
  let sentId = 0;
  const pending = calls.call("n1", "probe of n1", 5_000, (id) => ((sentId = id), true));
  calls.answer("n2", { t: "resp", id: sentId, ok: true, value: { members: [] } });
  const early = await Promise.race([pending.then(() => "settled"), new Promise((r) => setTimeout(() => r("pending"), 50))]);
  expect(early).toBe("pending");
  calls.answer("n1", { t: "resp", id: sentId, ok: true, value: "from n1" });
  expect(await pending).toBe("from n1");
});

test("a checkpoint offer whose Raft message claims another sender (or is malformed) never reaches the core", async () => {
  c = await inprocCluster(["n1", "n2", "n3"]);
  await Promise.all(["n1", "n2", "n3"].map((id) => c!.start(id)));
  const leader = await c.leader();
  await waitStableVoters(leader, 3);
  const follower = [...c.nodes.values()].find((n) => n !== leader)!;
  const member = [...c.nodes.values()].find((n) => n !== leader && n !== follower)!;
  const term = follower.status().term;
  const clusterId = follower.status().clusterId!;
  const bad = follower.counters.badPeerPayloads;

  // Without TLS anyone may claim a member's id (insecure mode cannot authenticate); the member check still applies.
  const { log } = memoryLogger("debug");
  const t = new PeerTransport<unknown>({ nodeId: member.id, clusterId, listen: { host: "127.0.0.1", port: 0 }, tls: "insecure", logger: log, onMessage: () => {} });
  transports.push(t);
  await t.listen();
  const peerOf = c.config.nodes.find((n) => n.id === follower.id)!.peer;
  t.setPeers(new Map([[follower.id, peerOf]]));
  const conf = { voters: ["n1", "n2", "n3"], votersOutgoing: [], learners: [], learnersNext: [] };
  const empty = createHash("sha256").update(new Uint8Array(0)).digest("hex");
  const manifest = { id: "ckpt-1000", index: 1000, term: term + 10, conf, feedLast: 0, bytes: 0, sha256: empty, clusterId, createdAt: new Date().toISOString() };
  const msg = {
    type: "snap", from: leader.id, to: follower.id, term: term + 10, cluster: clusterId, index: 0, logTerm: 0, entries: [], commit: 0,
    commitTerm: 0, reject: false, rejectHint: 0, context: "", snapshot: { index: 1000, term: term + 10, conf },
  };
  t.send(follower.id, { t: "snapOffer", xfer: "x1", manifest, msg });
  t.send(follower.id, { t: "snapOffer", xfer: "x2", manifest, msg: { ...msg, from: member.id, term: "high" } });
  await waitFor("both offers refused", () => follower.counters.badPeerPayloads >= bad + 2);
  expect(c.logs.some((l) => l.includes(`ignored a malformed checkpoint offer from ${member.id}: its message claims to be from ${leader.id}`))).toBe(true);
  expect(c.logs.some((l) => l.includes(`ignored a malformed checkpoint offer from ${member.id}: term is not a whole number`))).toBe(true);
  expect(follower.status().term).toBe(term);
  expect(follower.status().index.applied).toBeLessThan(1000);
}, 30_000);

import { afterEach, describe, expect, test } from "bun:test";
import { AdmittedSet, normalizeSerial } from "../../src/node/admission.ts";
import type { Admission, PeerTls, RefusedByInfo } from "../../src/transport/context.ts";
import { loadX509 } from "../../src/transport/x509.ts";
import { logsMatching, peerMap, startNode, testCluster, waitFor, type NodeOptions, type TestNode } from "./helpers.ts";

const running: TestNode[] = [];

async function node(id: string, opts: NodeOptions): Promise<TestNode> {
  const n = await startNode(id, opts);
  running.push(n);
  return n;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.transport.close()));
});

/** An admission rule over a set that the test changes: members of `ids`, less `revoked` (ids or serials). */
function rule(ids: string[], revoked: string[] = []): { admit: Admission; set(ids: string[], revoked?: string[]): void } {
  let current = new AdmittedSet({ members: ids, appliedIndex: 7, fileIds: ids, filePath: "/etc/cairn/cluster.json", revoked });
  return {
    admit: (p) => {
      const refusal = current.check(p);
      // Like the node's rule: a non-member is told what the configuration is.
      return refusal?.kind === "notMember" ? { ...refusal, info: { members: ids } } : refusal;
    },
    set(next: string[], nextRevoked: string[] = []) {
      current = new AdmittedSet({ members: next, appliedIndex: 8, fileIds: next, filePath: "/etc/cairn/cluster.json", revoked: nextRevoked });
    },
  };
}

async function serialOf(material: PeerTls): Promise<string> {
  const x509 = await loadX509();
  return new x509.X509Certificate(material.cert).serialNumber;
}

function payloadsFrom(n: TestNode, from: string): unknown[] {
  return n.received.filter((r) => r.from === from).map((r) => r.payload);
}

describe("peer admission over mutual TLS", () => {
  test("a certificate of the cluster CA for a node that is not a member is refused inbound, with the reason on both sides", async () => {
    const c = await testCluster();
    const r = rule(["n1", "n2"]);
    const a = await node("n1", { tls: await c.tls("n1"), admit: r.admit });
    const member = await node("n2", { tls: await c.tls("n2") });
    const stranger = await node("n4", { tls: await c.tls("n4") });
    member.transport.setPeers(peerMap({ n1: a.port }));
    stranger.transport.setPeers(peerMap({ n1: a.port }));
    for (let i = 0; i < 5; i++) stranger.transport.send("n1", { t: "raft", m: { type: "heartbeat", term: 99 } });
    member.transport.send("n1", { t: "raft", m: { type: "heartbeat", term: 2 } });
    await waitFor("the member's message arrives", () => payloadsFrom(a, "n2").length === 1);
    await waitFor("n1 refuses n4", () => (a.transport.metrics().refusedByKind.notMember ?? 0) >= 1);
    await waitFor("n4 hears why", () => logsMatching(stranger, "could not connect to peer").some((l) => String(l.reason).includes("not a member")));
    expect(payloadsFrom(a, "n4")).toEqual([]);
    const line = logsMatching(a, "refused peer connection").find((l) => l.kind === "notAdmitted");
    expect(line?.peer).toBe("n4");
    expect(String(line?.msg)).toContain("node n4 is not a member of the Raft configuration (applied index 7: n1,n2)");
    expect(String(line?.msg)).toContain("/etc/cairn/cluster.json");
    expect(stranger.transport.metrics().peers.n1?.connected).toBe(false);
  });

  test("a node does not connect out to a peer that is not admitted: nothing is sent to it", async () => {
    const c = await testCluster();
    const r = rule(["n1", "n2"]);
    const a = await node("n1", { tls: await c.tls("n1"), admit: r.admit });
    const stranger = await node("n4", { tls: await c.tls("n4") });
    a.transport.setPeers(peerMap({ n4: stranger.port }));
    a.transport.send("n4", { t: "fwd", id: 1 });
    await waitFor("n1 refuses to talk to n4", () => (a.transport.metrics().refusedByKind.notMember ?? 0) >= 1);
    const line = logsMatching(a, "could not connect to peer").find((l) => String(l.reason).includes("does not admit peer n4"));
    expect(String(line?.reason)).toContain("not a member");
    expect(a.transport.metrics().peers.n4?.connected).toBe(false);
    expect(stranger.received).toEqual([]);
  });

  test("a member dropped from the admitted set has its open connections, both directions, closed at once and is refused after", async () => {
    const c = await testCluster();
    const r = rule(["n1", "n2"]);
    const refusedBy: RefusedByInfo[] = [];
    const a = await node("n1", { tls: await c.tls("n1"), admit: r.admit });
    const b = await node("n2", { tls: await c.tls("n2"), onRefusedBy: (e) => refusedBy.push(e) });
    a.transport.setPeers(peerMap({ n2: b.port }));
    b.transport.setPeers(peerMap({ n1: a.port }));
    a.transport.send("n2", { n: 1 });
    b.transport.send("n1", { n: 1 });
    await waitFor("both directions up", () => a.transport.metrics().peers.n2?.connected === true && b.transport.metrics().peers.n1?.connected === true);
    await waitFor("n1 got n2's message", () => payloadsFrom(a, "n2").length === 1);
    r.set(["n1"]);
    a.transport.recheckPeers();
    expect(a.transport.metrics().peers.n2?.connected).toBe(false);
    await waitFor("n1's inbound from n2 closed", () => a.transport.metrics().inboundConnections === 0);
    await waitFor("n2 was told why", () => refusedBy.length >= 1);
    expect(refusedBy[0]?.peer).toBe("n1");
    expect(refusedBy[0]?.reason).toContain("node n2 is not a member");
    expect(refusedBy[0]?.info).toEqual({ members: ["n1", "n2"] });
    for (let i = 0; i < 3; i++) b.transport.send("n1", { n: 2 + i });
    await waitFor("n2's redials are refused", () => (a.transport.metrics().refusedByKind.notMember ?? 0) >= 3);
    expect(payloadsFrom(a, "n2")).toEqual([{ n: 1 }]);
  });

  test("a member revoked by id or by certificate serial (any case, with ':') is closed at once and refused", async () => {
    const c = await testCluster();
    const tls2 = await c.tls("n2");
    const tls3 = await c.tls("n3");
    const r = rule(["n1", "n2", "n3"]);
    const a = await node("n1", { tls: await c.tls("n1"), admit: r.admit });
    const b = await node("n2", { tls: tls2 });
    const d = await node("n3", { tls: tls3 });
    for (const n of [b, d]) {
      n.transport.setPeers(peerMap({ n1: a.port }));
      n.transport.send("n1", { hello: n.id });
    }
    await waitFor("both members connected", () => payloadsFrom(a, "n2").length === 1 && payloadsFrom(a, "n3").length === 1);
    const serial3 = (await serialOf(tls3)).toLowerCase().replace(/(..)(?=.)/g, "$1:");
    r.set(["n1", "n2", "n3"], ["n2"]);
    a.transport.recheckPeers();
    await waitFor("n2 closed", () => a.transport.metrics().inboundConnections === 1);
    r.set(["n1", "n2", "n3"], ["n2", serial3]);
    a.transport.recheckPeers();
    await waitFor("n3 closed", () => a.transport.metrics().inboundConnections === 0);
    const m = a.transport.metrics();
    expect(m.refusedByKind.revoked).toBe(2);
    b.transport.send("n1", { again: "n2" });
    d.transport.send("n1", { again: "n3" });
    await waitFor("redials refused", () => (a.transport.metrics().refusedByKind.revoked ?? 0) >= 4);
    expect(payloadsFrom(a, "n2")).toEqual([{ hello: "n2" }]);
    expect(payloadsFrom(a, "n3")).toEqual([{ hello: "n3" }]);
    const msgs = logsMatching(a, "revoked").map((l) => String(l.msg));
    const upper = (await serialOf(tls3)).toUpperCase();
    expect(msgs.some((s) => s.includes("node n2 is revoked"))).toBe(true);
    expect(msgs.some((s) => s.includes(`the certificate of node n3 (serial ${upper}) is revoked`))).toBe(true);
  });
});

describe("peer admission without TLS (--insecure)", () => {
  test("the claimed id must be a member too", async () => {
    const r = rule(["n1", "n2"]);
    const a = await node("n1", { tls: "insecure", admit: r.admit });
    const stranger = await node("n4", { tls: "insecure" });
    stranger.transport.setPeers(peerMap({ n1: a.port }));
    stranger.transport.send("n1", { t: "fwd" });
    await waitFor("n1 refuses n4", () => (a.transport.metrics().refusedByKind.notMember ?? 0) >= 1);
    expect(payloadsFrom(a, "n4")).toEqual([]);
  });
});

describe("AdmittedSet", () => {
  test("serials compare case-insensitively, ignoring ':' and leading zeros; ids and serials both revoke", () => {
    expect(normalizeSerial("00:0A:bC")).toBe("abc");
    expect(normalizeSerial("0ABC")).toBe(normalizeSerial("a:b:c"));
    const s = new AdmittedSet({ members: ["n1", "n2"], appliedIndex: 3, fileIds: ["n1", "n3"], filePath: "/f.json", revoked: ["n2", "0a:Bc"] });
    expect(s.check({ id: "n1", serial: null })).toBeNull();
    expect(s.check({ id: "n3", serial: "1234" })).toBeNull(); // a joiner the file lists
    expect(s.check({ id: "n2", serial: null })?.kind).toBe("revoked");
    expect(s.check({ id: "n1", serial: "ABC" })?.kind).toBe("revoked");
    expect(s.check({ id: "n4", serial: null })).toEqual({
      kind: "notMember",
      reason: "node n4 is not a member of the Raft configuration (applied index 3: n1,n2) and not listed in cluster file /f.json (n1,n3): to add it, list it in the cluster file",
    });
  });
});

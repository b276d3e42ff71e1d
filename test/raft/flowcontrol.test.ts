/**
 * A lagging follower costs the leader bounded memory (issue 9): appends in
 * flight are bounded by bytes, not only by count, and a burst of answers to
 * heartbeats sent before a probe does not send a copy of the probe each.
 */
import { describe, expect, test } from "bun:test";
import type { Message } from "../../src/raft/index.ts";
import { Network, msg } from "./harness.ts";

const entryBytesOf = (m: Message): number => m.entries.reduce((s, e) => s + e.data.byteLength, 0);

describe("flow control towards a lagging follower", () => {
  test("appends in flight to one follower stay within inflightBytesMax (plus one append), however far behind it is", () => {
    const msgBytesMax = 1000;
    const inflightBytesMax = 3000;
    const net = new Network(["n1", "n2", "n3"], { raft: { msgBytesMax, inflightBytesMax, inflightMax: 256 } });
    net.elect("n1");
    // n3 stops answering (a paused process): everything sent to it stays in flight.
    net.isolate("n3");
    net.clearLog();
    for (let i = 0; i < 100; i++) {
      net.raft("n1").propose(new Uint8Array(500).fill(i));
      net.settle();
    }
    net.tick("n1", 30);
    const toN3 = net.dropped.filter((m) => m.type === "app" && m.to === "n3");
    const sentBytes = toN3.reduce((s, m) => s + entryBytesOf(m), 0);
    expect(net.raft("n1").log.committed).toBeGreaterThanOrEqual(100); // n1 and n2 went on
    expect(sentBytes).toBeGreaterThan(0);
    expect(sentBytes).toBeLessThanOrEqual(inflightBytesMax + msgBytesMax);
  });

  test("answers to heartbeats sent before a probe do not resend the probe; one to a later heartbeat does", () => {
    const net = new Network(["n1", "n2", "n3"], { raft: { msgBytesMax: 1 << 20 } });
    net.elect("n1");
    const back = net.isolate("n3");
    net.clearLog();
    net.tick("n1", 5);
    const staleBeats = net.dropped.filter((m) => m.type === "heartbeat" && m.to === "n3");
    expect(staleBeats.length).toBeGreaterThan(0);
    // n3's connection is found dead: probe mode; the next proposal sends one (lost) probe.
    net.raft("n1").reportUnreachable("n3");
    for (let i = 0; i < 20; i++) net.raft("n1").propose(new Uint8Array(10_000).fill(i));
    net.settle();
    expect(net.dropped.filter((m) => m.type === "app" && m.to === "n3" && m.entries.length > 0).length).toBe(1);
    back();
    net.clearLog();

    // n3 resumes and answers the heartbeats queued before the probe, all at once.
    const r = net.raft("n1");
    for (const hb of staleBeats) r.step(msg({ type: "heartbeatResp", from: "n3", to: "n1", term: hb.term, index: hb.index, context: "" }));
    const copies = net.node("n1").processReady().filter((m) => m.type === "app" && m.to === "n3" && m.entries.length > 0);
    expect(copies.length).toBe(0);

    // A heartbeat sent after the probe is answered: the probe was lost, so it goes again, once.
    net.tick("n1", 2);
    net.settle();
    const resent = net.sent((m) => m.type === "app" && m.to === "n3" && m.entries.length > 0);
    expect(resent.length).toBeGreaterThanOrEqual(1);
    expect(net.raft("n3").log.lastIndex()).toBe(net.raft("n1").log.lastIndex());
  });
});

/**
 * Run by netns.test.ts inside a fresh network namespace (`ip netns exec`):
 * a 3-node cluster on that namespace's loopback, real packet loss on the peer
 * ports with iptables' statistic match (dropped on the way in, as a remote
 * network would), a closed-loop writer. Prints one JSON line per phase:
 * {"phase", "loss", "writes", "gapMs", "backMs"}.
 * Usage: netns-loss-driver.ts LOSS:SECONDS...   e.g. 0.2:20 0.35:10
 */
import { execFileSync } from "node:child_process";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, Writer } from "./harness.ts";

const IDS = ["n1", "n2", "n3"];
const ipt = (...a: string[]): void => void execFileSync("iptables", a);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let probeNo = 0;

async function firstWriteVia(c: E2ECluster, id: string, w: Writer): Promise<number> {
  const key = `probe-${id}-${++probeNo}`;
  w.unsettled.add(JSON.stringify({ probe: key }));
  return await waitFor(
    `a write through ${id}`,
    async () => {
      const r = await c.json(id, "/changes", {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ data: { probe: key }, tags: [] }),
        signal: AbortSignal.timeout(500),
      });
      return r.status === 200 || r.status === 201 ? performance.now() : undefined;
    },
    60_000,
    20,
  );
}

const phases = process.argv.slice(2).map((p) => p.split(":").map(Number) as [number, number]);
const c = await E2ECluster.init(3, (f) => {
  f.raft = { heartbeatMs: 100, electionMs: 1000 };
});
try {
  execFileSync("ip", ["link", "set", "lo", "up"]);
  for (const id of IDS) c.start(id);
  await c.waitVoters(3);
  const ports = IDS.map((id) => c.peer(id).split(":").pop()!).join(",");
  const w = new Writer(c, { via: () => IDS, clients: 4, attemptTimeoutMs: 1000 }).start();
  await w.more(20);
  for (const [loss, secs] of phases) {
    const from = performance.now();
    ipt("-A", "INPUT", "-i", "lo", "-p", "tcp", "-m", "multiport", "--ports", ports, "-m", "statistic", "--mode", "random", "--probability", String(loss), "-j", "DROP");
    await sleep(secs * 1000);
    const to = performance.now();
    ipt("-F", "INPUT");
    const writes = w.acks.filter((a) => a.at >= from && a.at <= to).length;
    const backAt = await Promise.all(IDS.map((id) => firstWriteVia(c, id, w)));
    console.log(JSON.stringify({ phase: "loss", loss, secs, writes, gapMs: Math.round(w.maxGapMs(from, to)), backMs: Math.round(Math.max(...backAt) - to) }));
  }
  await w.stop(5000);
} finally {
  await c.close();
}
process.exit(0);

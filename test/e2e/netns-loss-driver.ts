/**
 * Run by netns.test.ts inside a fresh network namespace (`ip netns exec`):
 * a 3-node cluster on that namespace's loopback, real packet loss on the peer
 * ports with iptables' statistic match (dropped on the way in, as a remote
 * network would), a closed-loop writer. Prints one JSON line per phase:
 * {"phase", "loss", "writes", "gapMs", "backMs"}.
 * Usage: netns-loss-driver.ts LOSS:SECONDS...   e.g. 0.2:20 0.35:10
 */
import { execFileSync } from "node:child_process";
import { E2ECluster, firstWriteVia, Writer } from "./harness.ts";

const IDS = ["n1", "n2", "n3"];
const ipt = (...a: string[]): void => void execFileSync("iptables", a);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    const backAt = await Promise.all(IDS.map((id) => firstWriteVia(c, id, { timeoutMs: 60_000, writer: w })));
    console.log(JSON.stringify({ phase: "loss", loss, secs, writes, gapMs: Math.round(w.maxGapMs(from, to)), backMs: Math.round(Math.max(...backAt) - to) }));
  }
  await w.stop(5000);
} finally {
  await c.close();
}
process.exit(0);

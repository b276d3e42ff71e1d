/**
 * Group commit through the leader: concurrent writes sent to the leader
 * itself must share Raft Readys (one SQLite transaction and fsync, one append
 * per follower) the way writes forwarded by a follower do. Measured from the
 * outside on the leader process: disk bytes written per acknowledged write
 * (/proc/PID/io), for the same burst of 64 concurrent clients sent through
 * the leader and through a follower. Linux only.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { E2ECluster } from "./harness.ts";

const IDS = ["n1", "n2", "n3"];
const CLIENTS = 64;
const WRITES_PER_CLIENT = 10;

let c: E2ECluster | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

function io(pid: number): Record<string, number> {
  const lines = readFileSync(`/proc/${pid}/io`, "utf8").trim().split("\n");
  return Object.fromEntries(lines.map((l) => {
    const [k, v] = l.split(": ");
    return [k!, Number(v)];
  }));
}

/** A burst of CLIENTS concurrent closed-loop writers through `via`; the leader's I/O per acknowledged write. */
async function burst(cl: E2ECluster, via: string, leaderPid: number): Promise<{ bytes: number; syscalls: number }> {
  const before = io(leaderPid);
  let acked = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async (_, client) => {
    for (let i = 0; i < WRITES_PER_CLIENT; i++) {
      const r = await cl.post(via, { client, i, via });
      expect(r.status).toBe(201);
      acked++;
    }
  }));
  const after = io(leaderPid);
  return { bytes: (after.write_bytes! - before.write_bytes!) / acked, syscalls: (after.syscw! - before.syscw!) / acked };
}

/*
 * BUG (src/node/node.ts, CairnNode.schedule(), the queueMicrotask call): the loop runs in a microtask
 * queued by each proposal, i.e. right after the HTTP handler that proposed, before the runtime parses
 * the next request. So at the leader every HTTP write becomes its own Ready: its own SQLite
 * transaction and fsync, its own append message to each follower (which persist and answer it on
 * their own), its own apply transaction. Writes forwarded by a follower arrive several per socket
 * chunk and do share a Ready. Measured here: ~12 KB written to disk per write at the leader when
 * writes go to the leader vs ~3.5-4.3 KB when the same burst goes through a follower; bench/write.ts:
 * 1160 writes/s through the leader vs 2683 through a follower. Fix: run the loop as a macrotask
 * (setImmediate from "node:timers", or setTimeout 0) so that every request parsed in one event-loop
 * turn is proposed before one Ready is persisted; with that change (tried on a copy of src/) this
 * test passes (~3.3 KB per write both ways) and writes through the leader went from ~250 to ~1000/s
 * on the loaded 2-CPU test machine. Remove the .todo then.
 */
test.todo("64 concurrent writes through the leader are group-committed like writes through a follower", async () => {
  if (!existsSync("/proc/self/io")) return; // no per-process I/O accounting on this OS
  c = await E2ECluster.init(3);
  for (const id of IDS) c.start(id);
  await c.waitVoters(3);
  const leader = await c.leader();
  const follower = IDS.find((id) => id !== leader)!;
  const pid = c.procs.get(leader)!.child.pid!;
  await burst(c, follower, pid); // warm-up: connections, JIT, SQLite pages
  const viaFollower = await burst(c, follower, pid);
  const viaLeader = await burst(c, leader, pid);
  const msg = `leader's I/O per write: through the leader ${JSON.stringify(viaLeader)}, through a follower ${JSON.stringify(viaFollower)}`;
  console.log(msg);
  // Disk bytes when the OS accounts them (ext4, xfs...), else write syscalls.
  if (viaFollower.bytes > 0) expect(viaLeader.bytes).toBeLessThanOrEqual(2 * viaFollower.bytes);
  else expect(viaLeader.syscalls).toBeLessThanOrEqual(2 * viaFollower.syscalls);
}, 60_000);

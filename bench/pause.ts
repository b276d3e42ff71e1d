/**
 * Pauses in successful writes while the cluster changes under load:
 *
 *   bun run bench/pause.ts [--reps 5] [--clients 8] [--out bench/RESULTS.md]
 *
 * A cluster of the built binary (dist/cairn) on loopback with TLS from
 * `cairn init` and the default timings (heartbeatMs 100, electionMs 1000).
 * `--clients` closed-loop writers (one write in flight each, an
 * Idempotency-Key per write, a failed attempt retried through the next node)
 * write through every live member except the one about to go away. For each
 * kind of change the number is the longest time between two consecutive
 * acknowledged writes (from any client) that overlaps the change:
 *
 *  - SIGTERM of the leader: from the signal to 2 heartbeats after the
 *    process's exit (it hands leadership to the most up-to-date voter
 *    first); then it restarts.
 *  - add (a new id in the file, its process started: the learner is added),
 *    promote (the caught-up learner becomes a voter), remove (an id taken out
 *    of the file), remove-leader (the leader taken out of the file: it hands
 *    over, then the new leader removes it): from the leader's log line that
 *    proposes the step to the one that shows the joint configuration left.
 *  - address move: a follower's peer port changed in the file to a free
 *    port: from the file write until the leader is connected to the new port.
 *  - steady: windows of the same load with no change, for comparison.
 *
 * Every acknowledged write is checked on every member at the end (exactly
 * once, same order). Writes its section of bench/RESULTS.md and prints it.
 */
import { spawnSync } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BINARY, E2ECluster, ROOT, ensureBinary, expectFeedsAgree, type ClusterFileNode, type LogLine, Writer } from "../harness/cluster.ts";
import { freePort, waitFor } from "../harness/ports.ts";
import { machine, median, sleep, writeSection } from "./lib.ts";

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "5" },
    clients: { type: "string", default: "8" },
    out: { type: "string", default: join(ROOT, "bench", "RESULTS.md") },
  },
});

function whole(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number of at least ${min}, got ${JSON.stringify(v)}`);
  return n;
}

const reps = whole("reps", args.reps, 1);
const clients = whole("clients", args.clients, 1);
const HEARTBEAT_MS = 100;
const ELECTION_MS = 1000;
const STEADY_MS = 2000;
/** A SIGTERM window ends this long after the process exited (requests it held fail over then). */
const AFTERMATH_MS = 2 * HEARTBEAT_MS;
const log = (s: string) => console.error(`[pause] ${s}`);

type Kind = "SIGTERM of the leader" | "add (learner)" | "promote (voter)" | "remove (voter)" | "remove-leader" | "address move" | "steady (no change)";
const KINDS: Kind[] = ["SIGTERM of the leader", "add (learner)", "promote (voter)", "remove (voter)", "remove-leader", "address move", "steady (no change)"];

/** performance.now() of a log line (its ts is wall-clock time on the same machine). */
const clockOffset = Date.now() - performance.now();
const at = (l: LogLine) => Date.parse(String(l.ts)) - clockOffset;

class Bench {
  readonly results = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
  /** Members that writes may go through (the one about to leave is taken out first). */
  via: string[] = [];
  readonly w: Writer;
  private readonly spare: Map<string, ClusterFileNode>;

  constructor(readonly c: E2ECluster) {
    const all = c.readFile().nodes;
    this.spare = new Map(all.map((n) => [n.id, n]));
    this.w = new Writer(c, { via: () => this.via, clients, attemptTimeoutMs: 5000 });
  }

  record(kind: Kind, from: number, to: number): void {
    const gap = this.w.maxGapMs(from, to);
    this.results.get(kind)!.push(gap);
    log(`${kind}: longest write gap ${Math.round(gap)} ms (window ${Math.round(to - from)} ms)`);
  }

  logsSince(t: number): (LogLine & { node: string })[] {
    const ids = [...new Set([...this.spare.keys()])];
    return ids
      .flatMap((id) => this.c.allLogs(id).map((l) => ({ ...l, node: id }) as LogLine & { node: string }))
      .filter((l) => typeof l.ts === "string" && at(l) >= t)
      .sort((a, b) => at(a) - at(b));
  }

  /** The window of one membership step: its "membership: <step>" line to the next non-joint configuration line. */
  async stepWindow(since: number, step: RegExp): Promise<{ from: number; to: number }> {
    return await waitFor(`the step ${step} to finish`, () => {
      const lines = this.logsSince(since);
      const i = lines.findIndex((l) => step.test(l.msg ?? ""));
      if (i < 0) return undefined;
      const end = lines.slice(i + 1).find((l) => /^configuration at index \d+: /.test(l.msg ?? "") && !/joint with/.test(l.msg ?? ""));
      return end ? { from: at(lines[i]!), to: at(end) } : undefined;
    }, 60_000, 50);
  }

  async voters(): Promise<string[]> {
    const l = await this.c.leader(30_000, this.via);
    const st = await this.c.status(l);
    return st.members.filter((m: { role: string }) => m.role === "voter").map((m: { id: string }) => m.id).sort();
  }

  /** Every member applied what the leader committed, and the configuration is `want`, no learners. */
  async settled(want: string[]): Promise<void> {
    const sorted = [...want].sort();
    await waitFor(`members ${sorted.join(",")} settled`, async () => {
      const l = await this.c.leader(30_000, want);
      const st = await this.c.status(l);
      const v = st.members.filter((m: { role: string }) => m.role === "voter").map((m: { id: string }) => m.id).sort();
      if (JSON.stringify(v) !== JSON.stringify(sorted) || st.members.length !== sorted.length) return false;
      const all = await Promise.all(want.map((id) => this.c.status(id)));
      return all.every((s) => s.index.applied >= st.index.commit - 100);
    }, 60_000, 100);
  }

  async steady(): Promise<void> {
    const t = performance.now();
    await sleep(STEADY_MS); // a window of plain load: its length is the measurement, not a wait for a condition
    this.record("steady (no change)", t, performance.now());
  }

  async sigterm(members: string[]): Promise<void> {
    const leader = await this.c.leader(30_000, members);
    this.via = members.filter((id) => id !== leader);
    await this.w.more(50);
    const t0 = performance.now();
    await this.c.stop(leader, 30_000);
    const exited = performance.now();
    await sleep(AFTERMATH_MS); // the window goes on a little past the exit: its length is the measurement
    this.record("SIGTERM of the leader", t0, exited + AFTERMATH_MS);
    this.c.start(leader);
    this.via = members;
    await this.settled(members);
  }

  /** Adds `id` (fresh data) through the file: one add and one promote measured. */
  async add(id: string, members: string[]): Promise<void> {
    rmSync(this.c.dataDir(id), { recursive: true, force: true });
    const t = performance.now();
    this.c.editFile((f) => f.nodes.push(this.spare.get(id)!));
    this.c.start(id);
    const add = await this.stepWindow(t, new RegExp(`^membership: addLearner ${id} `));
    this.record("add (learner)", add.from, add.to);
    const promote = await this.stepWindow(t, new RegExp(`^membership: promote ${id} `));
    this.record("promote (voter)", promote.from, promote.to);
    await this.settled([...members, id]);
    this.via = [...members, id];
  }

  async remove(id: string, members: string[]): Promise<void> {
    const rest = members.filter((m) => m !== id);
    this.via = rest;
    await this.w.more(50);
    const isLeader = (await this.c.leader(30_000, members)) === id;
    const t = performance.now();
    this.c.editFile((f) => (f.nodes = f.nodes.filter((n) => n.id !== id)));
    const step = await this.stepWindow(t, new RegExp(`^membership: remove ${id} `));
    if (isLeader) {
      const handOver = this.logsSince(t).find((l) => /^membership: this leader leaves the cluster/.test(l.msg ?? ""));
      this.record("remove-leader", handOver ? at(handOver) : step.from, step.to);
    } else {
      this.record("remove (voter)", step.from, step.to);
    }
    await this.settled(rest);
    await this.c.stop(id, 30_000);
  }

  async move(members: string[]): Promise<void> {
    const leader = await this.c.leader(30_000, members);
    const f = members.find((id) => id !== leader)!;
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const t = performance.now();
    this.c.editFile((file) => (file.nodes.find((n) => n.id === f)!.peer = address));
    this.spare.set(f, { ...this.spare.get(f)!, peer: address });
    const connected = await waitFor(`${leader} connected to ${f} at ${address}`, () =>
      this.logsSince(t).find((l) => l.node === leader && l.msg === "connected to peer" && l.peer === f && l.address === address),
    60_000, 20);
    await this.w.more(50);
    this.record("address move", t, at(connected) + HEARTBEAT_MS);
  }
}

async function run(): Promise<Bench> {
  ensureBinary();
  const c = await E2ECluster.init(4, (f) => {
    f.raft = { heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS };
  });
  const b = new Bench(c);
  c.editFile((f) => {
    f.nodes = f.nodes.filter((n) => n.id !== "n4");
    f.founders = ["n1", "n2", "n3"];
  });
  try {
    for (const id of ["n1", "n2", "n3"]) c.start(id);
    await c.waitVoters(3, 60_000);
    b.via = ["n1", "n2", "n3"];
    b.w.start();
    await b.w.more(200);
    let members = ["n1", "n2", "n3"];
    for (let i = 0; i < reps; i++) {
      log(`round ${i + 1}/${reps} (members ${members.join(",")})`);
      await b.steady();
      await b.sigterm(members);
      const spare = ["n1", "n2", "n3", "n4"].find((id) => !members.includes(id))!;
      await b.add(spare, members);
      members = [...members, spare];
      await b.move(members);
      // Alternate: take out a follower, or the leader, so both are measured every other round.
      const leader = await c.leader(30_000, members);
      const out = i % 2 === 0 ? members.find((id) => id !== leader && id !== spare)! : leader;
      await b.remove(out, members);
      members = members.filter((id) => id !== out);
      if (i % 2 === 0) {
        // Measure remove-leader every round too: take the leader out, and bring the follower back.
        const l = await c.leader(30_000, members);
        await b.add(out, members);
        members = [...members, out];
        await b.remove(l, members);
        members = members.filter((id) => id !== l);
      }
    }
    await b.w.stop();
    log(`load: ${b.w.summary()}`);
    const { length } = await expectFeedsAgree(c, members, b.w, 60_000);
    log(`checked: ${b.w.acks.length} acknowledged writes are on ${members.join(", ")} exactly once, in the same order (feed length ${length})`);
  } finally {
    await b.w.stop(0);
    await c.close();
  }
  return b;
}

const loadAverage = () => loadavg().map((x) => x.toFixed(2)).join(" / ");

async function main(): Promise<void> {
  ensureBinary();
  const loadAtStart = loadAverage();
  const b = await run();
  const rows = KINDS.map((k) => {
    const xs = b.results.get(k)!;
    return `| ${k} | ${xs.length} | ${xs.map((x) => Math.round(x)).join(", ")} | **${Math.round(median(xs))}** | ${Math.round(Math.max(...xs))} |`;
  });
  const version = `${spawnSync(BINARY, ["version"], { encoding: "utf8" }).stdout?.trim() ?? "?"}, built ${statSync(BINARY).mtime.toISOString()}`;
  const facts = machine({
    cairn: `${version} (dist/cairn, bun build --compile)`,
    "load average (1/5/15 min)": `${loadAtStart} at the start, ${loadAverage()} at the end (other work on the machine competes for its CPUs)`,
  });
  const command = `bun run bench/pause.ts --reps ${reps} --clients ${clients}`;
  const body = `Written by \`bench/pause.ts\`. Command (from the repository root, after \`npm run build\`):

\`\`\`sh
${command}
\`\`\`

3 (briefly 4) nodes of dist/cairn on this one machine (loopback, mutual TLS,
HTTPS API, SQLite \`synchronous=FULL\`), heartbeat ${HEARTBEAT_MS} ms, election timeout
${ELECTION_MS} ms. ${clients} closed-loop clients (one write in flight each, an
Idempotency-Key per write, a failed attempt retried at once through the next
node) write through every member except the one about to go away. A number is
the longest time between two consecutive acknowledged writes that overlaps the
change (ms). Every acknowledged write (${b.w.acks.length}) was then found on
every member exactly once, in the same order.

- SIGTERM of the leader: from the signal to ${AFTERMATH_MS} ms after the process exited; the
  leader hands leadership to the most up-to-date voter first. Target: under 2
  heartbeat intervals (${2 * HEARTBEAT_MS} ms), far from an election timeout (${ELECTION_MS} ms).
- add / promote / remove / remove-leader: from the leader's log line proposing
  the step (for remove-leader: the line where it starts handing over) to the
  line showing the joint configuration left. Each is one change through joint
  consensus (enter, then leave).
- address move: a follower's peer port changed in the file; from the file
  write to the leader being connected to the new port (plus one heartbeat).
- steady: ${STEADY_MS / 1000} s windows of the same load with no change, for comparison.

| change | runs | longest gap per run (ms) | median ms | max ms |
|---|---:|---|---:|---:|
${rows.join("\n")}

### Machine

${Object.entries(facts).map(([k, v]) => `- ${k}: ${v}`).join("\n")}
`;
  writeSection(args.out!, "Pauses (bench/pause.ts)", body);
  console.log(`## Pauses (bench/pause.ts)\n\n${body}`);
}

await main();
process.exit(0);

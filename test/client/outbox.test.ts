/**
 * The outbox with real processes: a 3-node cluster loses its quorum (2 nodes
 * stopped) while the application, a child process, posts OUTBOX_TOTAL
 * changes (default 10,000); it is killed with SIGKILL while posting and again
 * while delivering once the quorum is back. Every acknowledged change must
 * end up in the feed exactly once, in the order posted.
 *
 * OUTBOX_TOTAL and OUTBOX_DOWN_MS (how long the quorum stays down, default
 * 30 s, the figure) size the run; a slow CI machine may lower them.
 */
import { afterEach, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CairnClient } from "../../src/client/index.ts";
import { E2ECluster } from "../e2e/harness.ts";
import { waitFor } from "../helpers/ports.ts";

const TOTAL = Number(process.env.OUTBOX_TOTAL ?? "10000");
const DOWN_MS = Number(process.env.OUTBOX_DOWN_MS ?? "30000");
const CHILD = join(import.meta.dir, "outbox-child.ts");

interface App {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
  acked(): number;
  delivered(): number;
  replayed(): number;
}

let cluster: E2ECluster | null = null;
const apps: App[] = [];
/** Every app run's non-progress lines, for E2E_LOGS. */
const allAppLines: string[] = [];

afterEach(async () => {
  if (process.env.E2E_LOGS) {
    cluster?.dumpLogs(join(process.env.E2E_LOGS, "outbox"));
    mkdirSync(join(process.env.E2E_LOGS, "outbox"), { recursive: true });
    writeFileSync(join(process.env.E2E_LOGS, "outbox", "apps.log"), allAppLines.join("\n"));
  }
  for (const a of apps.splice(0)) {
    a.child.kill("SIGKILL");
    await a.exited;
  }
  await cluster?.close();
  cluster = null;
});

function startApp(c: E2ECluster, path: string): App {
  const child = spawn(process.execPath, ["run", CHILD], {
    env: { ...process.env, CAIRN_CLUSTER: c.file, CAIRN_TOKEN: c.token, OUTBOX_PATH: path, OUTBOX_TOTAL: String(TOTAL) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let acked = 0;
  let delivered = 0;
  let replayed = 0;
  let rest = "";
  child.stdout!.on("data", (d: Buffer) => {
    const parts = (rest + d.toString()).split("\n");
    rest = parts.pop()!;
    for (const l of parts) {
      if (l.startsWith("acked ")) acked = Number(l.slice(6));
      else if (l.startsWith("delivered ")) {
        delivered++;
        if (l.endsWith(" replayed")) replayed++;
      }
      else {
        lines.push(l);
        allAppLines.push(`${child.pid}: ${l}`);
      }
    }
  });
  child.stderr!.on("data", (d: Buffer) => {
    lines.push(`stderr: ${d.toString()}`);
    allAppLines.push(`${child.pid}: stderr: ${d.toString()}`);
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const app = { child, lines, exited, acked: () => acked, delivered: () => delivered, replayed: () => replayed };
  apps.push(app);
  return app;
}

async function kill9(a: App): Promise<void> {
  a.child.kill("SIGKILL");
  await a.exited;
  apps.splice(apps.indexOf(a), 1);
}

test(`the outbox takes ${TOTAL} changes while the cluster has no quorum and delivers each once, in order, across two kill -9 of the application`, async () => {
  const c = await E2ECluster.init(3);
  cluster = c;
  for (const id of ["n1", "n2", "n3"]) c.start(id);
  // All three must be voters first: while n2 and n3 are still learners, n1 alone is a quorum.
  await c.waitVoters(3, 60_000);
  const lead = await c.leader(30_000);
  const [down1, down2] = ["n1", "n2", "n3"].filter((id) => id !== lead) as [string, string];
  const path = join(c.dir, "app-outbox.db");
  const t0 = Date.now();
  await Promise.all([c.stop(down1), c.stop(down2)]);
  const quorumLost = Date.now();

  // 1. Posting without quorum; killed halfway.
  const a = startApp(c, path);
  await waitFor("half the changes acknowledged", () => a.acked() >= TOTAL / 2, 120_000, 5);
  const ackedBeforeKill = a.acked();
  await kill9(a);

  // 2. A new process continues from what the outbox holds: nothing acknowledged is lost.
  const b = startApp(c, path);
  await waitFor("the second run to start", () => b.lines.find((l) => l.startsWith("start ")), 30_000);
  const resumedFrom = Number(b.lines.find((l) => l.startsWith("start "))!.slice(6));
  expect(resumedFrom).toBeGreaterThanOrEqual(ackedBeforeKill);
  await waitFor("all changes acknowledged", () => b.lines.includes("posted"), 120_000, 10);
  const postedMs = Date.now() - quorumLost;
  expect(b.delivered()).toBe(0);
  if (Date.now() - quorumLost < DOWN_MS) await new Promise((r) => setTimeout(r, DOWN_MS - (Date.now() - quorumLost))); // the outage the test simulates, not a wait for a condition
  const downMs = Date.now() - quorumLost;

  // 3. Quorum back; killed mid-delivery.
  c.start(down1);
  c.start(down2);
  const back = Date.now();
  await waitFor("delivery under way", () => b.delivered() >= TOTAL / 5, 60_000, 2);
  await kill9(b);
  const deliveredAtKill = b.delivered();
  expect(b.lines).not.toContain("flushed");

  // 4. A third run delivers the rest.
  const d = startApp(c, path);
  await waitFor("everything delivered", () => d.lines.includes("flushed"), 300_000, 20);
  const deliverMs = Date.now() - back;
  expect(await d.exited).toBe(0);
  apps.splice(apps.indexOf(d), 1);

  // The feed: each n exactly once, in order; the outbox's index per write agrees with it.
  const cl = new CairnClient({ cluster: c.file, token: c.token });
  const feed: { index: number; n: number }[] = [];
  let since = 0;
  for (;;) {
    const page = await cl.listChanges({ since, tags: ["outbox"], limit: 1000 });
    feed.push(...page.changes.map((ch) => ({ index: ch.index, n: (ch.data as { n: number }).n })));
    if (page.atEnd) break;
    since = page.next;
  }
  expect(feed.length).toBe(TOTAL);
  expect(feed.every((f, i) => f.n === i + 1)).toBe(true);
  const box = await cl.outbox({ path, start: false });
  const st = box.status();
  expect(st).toMatchObject({ pending: 0, delivered: TOTAL, failed: 0, lastSeq: TOTAL });
  for (let after = 0; after < TOTAL; after += 1000) {
    for (const e of box.entries(after, 1000)) expect(e.index).toBe(feed[e.seq - 1]!.index);
  }
  await box.close();
  cl.close();
  console.log(`outbox figures: ${TOTAL} changes, posted without quorum in ${postedMs} ms (first run killed at ${ackedBeforeKill} acked, second resumed at ${resumedFrom}), quorum down ${downMs} ms, second run killed after ${deliveredAtKill} delivered, all delivered ${deliverMs} ms after quorum came back (${d.replayed()} writes answered as replays after the kill); total ${Date.now() - t0} ms`);
}, 600_000);

/**
 * `cairn status` and `cairn top` against a real 3-node TLS cluster (tokens on):
 * the table has every node, the leader's view of lag and contact, a stopped
 * node shows as unreachable; top redraws until SIGINT and exits 0.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { waitFor } from "../helpers/ports.ts";
import { BINARY, E2ECluster, runCairn } from "./harness.ts";

let c: E2ECluster;
const children: ChildProcess[] = [];
beforeAll(async () => {
  c = await E2ECluster.init(3);
  for (const id of ["n1", "n2", "n3"]) c.start(id);
  await c.waitVoters(3);
}, 60_000);
afterAll(async () => {
  for (const p of children) if (p.exitCode === null) p.kill("SIGKILL");
  await c?.close();
});

const cairn = (...args: string[]) => runCairn(args, { env: c.env() });

/** The table's rows by node id: the columns split on two or more spaces. */
function rowsOf(out: string): Map<string, string[]> {
  const lines = out.trim().split("\n");
  const head = lines.findIndex((l) => l.startsWith("NODE"));
  expect(head).toBeGreaterThanOrEqual(0);
  expect(lines[head]!.split(/ {2,}/)).toEqual(["NODE", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "LAST CONTACT", "PROBLEMS"]);
  return new Map(lines.slice(head + 1).map((l) => l.split(/ {2,}/)).map((cols) => [cols[0]!, cols]));
}

test("cairn status prints a table of every node with the leader's view; --json prints a node's /status", async () => {
  const leader = await c.leader();
  const st = await cairn("status", "--config", c.file);
  expect(st.code).toBe(0);
  expect(st.out).toContain(`leader ${leader}`);
  const rows = rowsOf(st.out);
  expect([...rows.keys()].sort()).toEqual(["n1", "n2", "n3"]);
  for (const [id, cols] of rows) {
    expect(cols[1]).toBe(id === leader ? "leader" : "follower");
    expect(Number(cols[2])).toBeGreaterThan(0); // term
    expect(Number(cols[3])).toBeGreaterThan(0); // commit
    expect(Number(cols[4])).toBeGreaterThanOrEqual(0); // applied
    expect(cols[5]).toMatch(/^\d+$/); // lag, from the leader
    expect(cols[6]).toMatch(id === leader ? /^self$/ : /^\d+ (ms|s) ago$/);
    expect(cols[7]).toBe("none");
  }
  const js = await cairn("status", "--json", "--url", c.api(leader), "--ca", `${c.dir}/ca/ca.pem`);
  expect(js.code).toBe(0);
  expect(JSON.parse(js.out).role).toBe("leader");
}, 60_000);

test("cairn top redraws the table until SIGINT and exits 0; a stopped node shows as unreachable", async () => {
  const leader = await c.leader();
  const down = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const p = spawn(BINARY, ["top", "--interval", "0.2", "--config", c.file], { stdio: ["ignore", "pipe", "pipe"], env: c.env() });
  children.push(p);
  let out = "";
  p.stdout.on("data", (d) => (out += d));
  p.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((res) => p.once("exit", (code) => res(code)));
  const tables = () => out.split("\n").filter((l) => l.startsWith("NODE")).length;
  await waitFor("two rounds of cairn top", () => tables() >= 2, 15_000);
  await c.stop(down);
  const before = out.length;
  await waitFor(`cairn top showing ${down} unreachable`, () => {
    const last = out.slice(before).split(/\n(?=cluster )/).filter((t) => t.includes("\nNODE")).at(-1);
    return last !== undefined && rowsOf(last).get(down)?.[1] === "unreachable";
  }, 15_000);
  p.kill("SIGINT");
  const code = await Promise.race([exited, new Promise((res) => setTimeout(() => res("still running 5 s after SIGINT"), 5000))]);
  expect(code).toBe(0);
  const st = await cairn("status", "--config", c.file);
  expect(st.code).toBe(0);
  expect(rowsOf(st.out).get(down)?.[7]).toContain("unreachable");
}, 90_000);

test("cairn top refuses an interval out of bounds", async () => {
  const r = await cairn("top", "--interval", "0", "--config", c.file);
  expect(r.code).toBe(2);
  expect(r.err).toContain("--interval");
});

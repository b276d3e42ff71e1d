/**
 * The core's surface: code outside src/raft/ imports it only through
 * src/raft/index.ts, never its test-only switches (src/raft/testing.ts), and
 * reads its state through the read-only view (raft.view), not its mutable
 * fields (raft.trk, raft.log, raft.prs).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { NONE, Raft, SeededRng, type RaftConfig, type RaftView } from "../../src/raft/index.ts";
import { TestRaft } from "../../src/raft/testing.ts";
import { sources } from "../helpers/sources.ts";
import { bootstrapStorage, Network } from "./harness.ts";

const root = join(import.meta.dir, "..", "..");

const outsideCore = sources(join(root, "src")).filter((p) => !p.startsWith(join(root, "src", "raft") + "/"));

test("src/ outside the core imports it only through src/raft/index.ts", () => {
  const bad: string[] = [];
  for (const p of outsideCore) {
    for (const m of readFileSync(p, "utf8").matchAll(/from\s+"([^"]*\/raft\/[^"]+)"/g)) {
      if (!m[1]!.endsWith("/raft/index.ts")) bad.push(`${relative(root, p)}: ${m[1]}`);
    }
  }
  expect(bad).toEqual([]);
});

test("src/ outside the core reads it through raft.view, not its mutable fields (trk, log, prs)", () => {
  const bad: string[] = [];
  for (const p of outsideCore) {
    const lines = readFileSync(p, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (/\braft[!?]?\.(trk|log|prs)\b/.test(line) || /\.raft[!?]?\.(trk|log|prs)\b/.test(line)) bad.push(`${relative(root, p)}:${i + 1}: ${line.trim()}`);
    });
  }
  expect(bad).toEqual([]);
});

test("the known-bug switches are not part of the production surface: index.ts does not export them, RaftConfig has no such field", () => {
  const index = readFileSync(join(root, "src", "raft", "index.ts"), "utf8");
  expect(index).not.toMatch(/from\s+"\.\/testing\.ts"/);
  expect(index).not.toContain("UnsafeBugs");
  // RaftConfig has no such field (tsc refuses it); a plain Raft handed one anyway ignores it, only TestRaft switches it on.
  const cfg = { id: "n1", clusterId: "c", storage: bootstrapStorage(["n1"]), rng: new SeededRng(1), unsafe: { voteWithoutLogCheck: true } };
  const switches = (r: Raft) => (r as unknown as { unsafe: object }).unsafe;
  expect(switches(new Raft(cfg as RaftConfig))).toEqual({});
  expect(switches(new TestRaft(cfg))).toEqual({ voteWithoutLogCheck: true });
});

test("raft.view is live and read-only: it follows the core, and writing to it throws", () => {
  const net = new Network(["n1", "n2", "n3"]);
  const raft = net.raft("n1");
  const v: RaftView = raft.view;
  expect(v.leader).toBe(NONE);
  net.elect("n1");
  expect(v.role).toBe("leader");
  expect(v.leader).toBe("n1");
  expect(v.term).toBe(raft.status().term);
  expect(v.voterIds().sort()).toEqual(["n1", "n2", "n3"]);
  expect(v.commit).toBe(raft.status().commit);
  expect(() => {
    (v as unknown as { term: number }).term = 99;
  }).toThrow();
  expect(raft.status().term).not.toBe(99);
});

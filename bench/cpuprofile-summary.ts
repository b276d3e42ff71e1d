/**
 * Shares of a Bun `--cpu-prof` profile by part of the write path:
 *
 *   bun run bench/cpuprofile-summary.ts FILE.cpuprofile [...]
 *
 * Each sample goes to the innermost frame of its stack that belongs to a
 * known part (a native leaf such as SQLite's `run` counts for the module that
 * called it): SQLite commit (the COMMIT of a transaction: the WAL write and
 * its fsync), other SQLite statements, CBOR (cbor-x), JSON (native
 * parse/stringify), HTTP (hono, zod, src/api, the server glue), peer
 * transport, Raft core, node loop, state machine JS, checkpoints, and the
 * runtime's own work with no JS caller (socket I/O, TLS, streams, GC).
 */
import { readFileSync } from "node:fs";

interface Frame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfNode {
  id: number;
  callFrame: Frame;
  children?: number[];
}
interface Profile {
  nodes: ProfNode[];
  samples: number[];
  startTime: number;
  endTime: number;
}

const RULES: [RegExp, string][] = [
  [/cbor-x|src\/platform\/cbor\.ts/, "CBOR (cbor-x)"],
  [/bun:sqlite|src\/platform\/sqlite\.ts/, "SQLite statements"],
  [/src\/checkpoint\//, "checkpoints"],
  [/src\/storage\/|src\/statemachine\//, "storage + state machine JS"],
  [/hono|zod|src\/api\/|src\/platform\/http\.ts/, "HTTP (hono, zod, routes)"],
  [/src\/platform\/tlsfront\.ts|node:tls|node:net/, "TLS / sockets (JS)"],
  [/src\/transport\//, "peer transport JS"],
  [/src\/raft\//, "Raft core"],
  [/src\/node\//, "node loop JS"],
];

function categorize(stack: Frame[]): string {
  const leaf = stack[0]!;
  if (leaf.url === "" && (leaf.functionName === "stringify" || leaf.functionName === "parse")) return "JSON";
  for (let i = 0; i < stack.length; i++) {
    const f = stack[i]!;
    if (f.url === "") continue;
    for (const [re, cat] of RULES) {
      if (!re.test(f.url)) continue;
      if (cat !== "SQLite statements") return cat;
      // A COMMIT: exec() called by transaction() (BEGIN is cheap; COMMIT writes the WAL and fsyncs).
      const commit = stack.some((g, k) => g.functionName === "exec" && /sqlite\.ts$/.test(g.url) && stack[k + 1]?.functionName === "transaction");
      if (!commit) return cat;
      const applying = stack.some((g) => /src\/statemachine\/fsm\.ts$/.test(g.url));
      return applying ? "SQLite commit of an apply (WAL write, no fsync)" : "SQLite commit of a log append (WAL write + fsync)";
    }
    return process.env.SHOW_OTHER ? `other: ${f.url}` : "other JS / runtime modules";
  }
  if (leaf.functionName === "(garbage collector)") return "GC";
  return "runtime natives, no JS caller (socket I/O, TLS, HTTP parsing, streams)";
}

export function summarize(path: string): { seconds: number; samples: number; shares: [string, number][] } {
  const p = JSON.parse(readFileSync(path, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const counts = new Map<string, number>();
  const memo = new Map<number, string>();
  for (const s of p.samples) {
    let cat = memo.get(s);
    if (cat === undefined) {
      const stack: Frame[] = [];
      for (let id: number | undefined = s; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!.callFrame);
      cat = stack[0]!.functionName === "(root)" || stack[0]!.functionName === "(idle)" ? "idle" : categorize(stack);
      memo.set(s, cat);
    }
    counts.set(cat, (counts.get(cat) ?? 0) + 1);
  }
  const busy = p.samples.length - (counts.get("idle") ?? 0);
  counts.delete("idle");
  const shares = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / busy] as [string, number]);
  return { seconds: (p.endTime - p.startTime) / 1e6, samples: busy, shares };
}

if (import.meta.main) {
  for (const f of process.argv.slice(2)) {
    const r = summarize(f);
    console.log(`${f}: ${r.samples} busy samples over ${r.seconds.toFixed(1)} s`);
    for (const [k, v] of r.shares) console.log(`  ${(v * 100).toFixed(1).padStart(5)}%  ${k}`);
  }
}

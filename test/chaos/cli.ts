/**
 * bun run chaos [--seed S] [--nodes 3|5] [--seconds N]      one run (replay a seed with the same options)
 * bun run chaos --minutes M [--seed S] [--nodes 3|5|both]   a soak: runs with seeds S, S+1, ... until M minutes
 *   [--kinds partition,kill,...] [--no-netns] [--out DIR] [--json FILE]
 * bun run chaos --check DIR/history.json                   re-run the checkers on a saved history
 *
 * Prints the seed and fault schedule of each run, the checks and the
 * availability figures; exits 1 after the first run with a safety problem
 * (its history, schedule and logs are saved, and the path printed).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { checkFeeds, checkKvFeed, checkRegisterHistory, type ChangeAttempt, type NodeFinal, type RegisterOp } from "./checker.ts";
import { ALL_KINDS, type FaultKind } from "./faults.ts";
import { kvChanges, withFeedVersions } from "./run.ts";
import { runChaos, type ChaosReport } from "./run.ts";

function summary(r: ChaosReport): string {
  const heals = r.heal.map((h) => h.ms);
  const worstHeal = heals.some((h) => h === null) ? "not within 30 s" : `${Math.max(0, ...(heals as number[]))} ms`;
  return [
    `seed ${r.seed} (${r.nodes} nodes, netns ${r.netns}): ${r.ok ? "no safety violation" : "SAFETY VIOLATION"}; ${r.ops} kv operations, ${r.changes} change posts, ${r.applied.length} faults`,
    `  longest gap without a successful write: ${r.longestWriteGapMs} ms; heal to every node writable: worst ${worstHeal}; converged ${r.convergeMs} ms after the clients stopped`,
    `  checkers caught ${r.planted.length > 0 ? r.planted.join(" and ") : "nothing (no violation could be planted)"} planted in a copy of the history`,
    `  peak RSS MB: ${Object.entries(r.peakRssMb).map(([id, mb]) => `${id} ${mb}`).join(", ")}`,
    ...r.problems.map((p) => `  PROBLEM: ${p}`),
    ...r.tooComplex.map((p) => `  TOO COMPLEX: ${p}`),
    ...(r.savedTo ? [`  history, schedule and logs saved in ${r.savedTo}`] : []),
  ].join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: "string" },
      nodes: { type: "string", default: "3" },
      seconds: { type: "string", default: "40" },
      minutes: { type: "string" },
      kinds: { type: "string" },
      "no-netns": { type: "boolean", default: false },
      out: { type: "string" },
      json: { type: "string" },
      check: { type: "string" },
    },
  });
  if (values.check) return recheck(values.check);
  const seed0 = values.seed === undefined ? Math.floor(Math.random() * 1e9) : Number(values.seed);
  const kinds = values.kinds ? (values.kinds.split(",") as FaultKind[]) : ALL_KINDS;
  for (const k of kinds) if (!ALL_KINDS.includes(k)) throw new Error(`unknown fault kind "${k}": use some of ${ALL_KINDS.join(", ")}`);
  const soakUntil = values.minutes === undefined ? null : Date.now() + Number(values.minutes) * 60_000;
  const reports: ChaosReport[] = [];
  for (let i = 0; ; i++) {
    const nodes = values.nodes === "both" ? (i % 2 === 0 ? 3 : 5) : (Number(values.nodes) as 3 | 5);
    const seed = seed0 + i;
    console.log(`\n=== run ${i + 1}: bun run chaos --seed ${seed} --nodes ${nodes} --seconds ${values.seconds}`);
    const r = await runChaos({
      seed,
      nodes,
      faultSeconds: Number(values.seconds),
      kinds,
      noNetns: values["no-netns"],
      ...(values.out ? { outDir: values.out } : {}),
      log: (m) => console.log(`  ${m.replaceAll("\n", "\n  ")}`),
    });
    reports.push(r);
    console.log(summary(r));
    if (values.json) writeFileSync(values.json, JSON.stringify(reports, null, 1));
    if (!r.ok) return 1;
    if (soakUntil === null || Date.now() > soakUntil) break;
  }
  if (reports.length > 1) console.log(`\n${soakTotals(reports)}\n\n${healTable(reports)}`);
  return 0;
}

export function soakTotals(rs: ChaosReport[]): string {
  const heals = rs.flatMap((r) => r.heal.map((h) => h.ms));
  const slow = heals.filter((h) => h === null).length;
  const worst = Math.max(0, ...(heals.filter((h) => h !== null) as number[]));
  const rss = Math.max(0, ...rs.flatMap((r) => Object.values(r.peakRssMb)));
  return [
    `soak: ${rs.length} runs, ${rs.reduce((s, r) => s + r.ops, 0)} kv operations, ${rs.reduce((s, r) => s + r.changes, 0)} change posts, ${rs.reduce((s, r) => s + r.applied.length, 0)} faults, ${rs.filter((r) => !r.ok).length} with a safety violation`,
    `  longest gap without a write: ${Math.max(...rs.map((r) => r.longestWriteGapMs))} ms; heal to every node writable: worst ${worst} ms${slow ? `, ${slow} heals not within 30 s` : ""}; peak RSS ${rss} MB`,
  ].join("\n");
}

if (import.meta.main) process.exit(await main());

/** Markdown: per fault kind, how often, and the time from its heal to every node writable. */
export function healTable(rs: ChaosReport[]): string {
  const byKind = new Map<string, (number | null)[]>();
  for (const h of rs.flatMap((r) => r.heal)) {
    const kind = /^\+[\d.]+s (\S+)/.exec(h.fault)?.[1] ?? "?";
    byKind.set(kind, [...(byKind.get(kind) ?? []), h.ms]);
  }
  const rows = [...byKind].sort().map(([kind, ms]) => {
    const ok = (ms.filter((m) => m !== null) as number[]).sort((a, b) => a - b);
    const median = ok.length ? ok[Math.floor(ok.length / 2)] : "-";
    const worst = ms.some((m) => m === null) ? "> 30000" : String(ok.at(-1) ?? "-");
    return `| ${kind} | ${ms.length} | ${median} | ${worst} |`;
  });
  return ["| fault | count | heal to every node writable, median ms | worst ms |", "|---|---:|---:|---:|", ...rows].join("\n");
}

/** The checks of a run, again, on the history a failed run saved (ops already carry the feed's versions). */
function recheck(file: string): number {
  const saved = JSON.parse(readFileSync(file, "utf8")) as {
    ops: RegisterOp[];
    changes: ChangeAttempt[];
    finals: { node: string; feed: NodeFinal["feed"]; kv: Record<string, string> }[];
  };
  const finals: NodeFinal[] = saved.finals.map((f) => ({ node: f.node, feed: f.feed, kv: new Map(Object.entries(f.kv)) }));
  const ops = finals[0] ? withFeedVersions(saved.ops, kvChanges(finals[0])) : saved.ops;
  const problems = [
    ...checkRegisterHistory(ops).results.filter((r) => !r.ok).map((r) => (r.ok ? "" : r.explanation)),
    ...checkFeeds(saved.changes, finals).problems,
    ...(finals[0] ? checkKvFeed(ops, kvChanges(finals[0])).problems : []),
  ];
  console.log(problems.length === 0 ? `${file}: no problem found` : `${file}:\n${problems.join("\n")}`);
  return problems.length === 0 ? 0 : 1;
}

/**
 * bun run sim --seed S --steps N [--nodes 3|5] [--bug NAME]... [--read-only safe|lease] [--profile mixed|harsh] [--storage sync|parallel|async] [--witness] [--verbose]
 * bun run sim --seeds A..B [--steps N] [--nodes 3|5|both] [--witness] [--storage sync|parallel|async] [--json]
 *
 * Exit status 1 on the first failing seed, with the replay command and trace.
 */
import { parseArgs } from "node:util";
import { runSeed, type SimBugs, type SimOptions, type SimStats } from "./sim.ts";

const BUGS = ["voteWithoutLogCheck", "commitOldTermByCount", "applyBeforePersist", "sendBeforePersist", "ackBeforeDurable", "witnessCompactsCommitted"] as const;

function parseRange(s: string): [number, number] {
  const m = /^(\d+)\.\.(\d+)$/.exec(s);
  if (!m) throw new Error(`--seeds wants A..B (for example 0..999), got "${s}"`);
  return [Number(m[1]), Number(m[2])];
}

function main(): number {
  const { values } = parseArgs({
    options: {
      seed: { type: "string" },
      seeds: { type: "string" },
      steps: { type: "string", default: "2000" },
      nodes: { type: "string", default: "both" },
      bug: { type: "string", multiple: true },
      "read-only": { type: "string" },
      profile: { type: "string" },
      storage: { type: "string" },
      verbose: { type: "boolean", default: false },
      witness: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const steps = Number(values.steps);
  const bugs: Record<string, boolean> = {};
  for (const b of values.bug ?? []) {
    if (!(BUGS as readonly string[]).includes(b)) throw new Error(`unknown --bug ${b}; known: ${BUGS.join(", ")}`);
    bugs[b] = true;
  }
  const readOnly = values["read-only"] as SimOptions["readOnly"];
  const [lo, hi] = values.seed !== undefined ? [Number(values.seed), Number(values.seed)] : parseRange(values.seeds ?? "0..99");
  const t0 = performance.now();
  const total: Record<string, number> = {};
  let runs = 0;
  for (let seed = lo; seed <= hi; seed++) {
    // "both" alternates 3 and 5 nodes by seed parity, so any seed replays alone.
    // The witness workload is always 2 data nodes + 1 witness.
    const nodes = values.witness ? 3 : values.nodes === "both" ? (seed % 2 === 0 ? 3 : 5) : (Number(values.nodes) as 3 | 5);
    const profile = values.profile as SimOptions["profile"];
    const storage = values.storage as SimOptions["storage"];
    const res = runSeed({ seed, steps, nodes, bugs: bugs as SimBugs, readOnly, profile, storage, verbose: values.verbose, witness: values.witness });
    runs++;
    if (!res.ok) {
      console.error(res.failure.report());
      if (values.json) console.log(JSON.stringify({ ok: false, seed, check: res.failure.check, runs }));
      return 1;
    }
    for (const [k, v] of Object.entries(res.stats as SimStats)) total[k] = (total[k] ?? 0) + v;
  }
  const ms = Math.round(performance.now() - t0);
  if (values.json) console.log(JSON.stringify({ ok: true, runs, steps, ms, total }));
  else console.log(`ok: ${runs} seeds x ${steps} steps in ${ms} ms; totals ${JSON.stringify(total)}`);
  return 0;
}

process.exit(main());

/**
 * The fault schedule of a chaos run, drawn from its seed before the run
 * starts (so a seed replays the same faults at the same times). A fault that
 * targets "the leader" is resolved when it is applied; the run log records
 * which node that was.
 */
import { SeededRng } from "../../src/raft/rng.ts";

export type FaultKind =
  | "partition" // two groups, cut both ways
  | "isolate-leader"
  | "one-way" // one node stops receiving from another
  | "bridge" // two groups that only one node connects
  | "loss"
  | "kill" // kill -9, restart at the end of the fault
  | "pause" // SIGSTOP, SIGCONT at the end (longer than the election timeout)
  | "transfer" // POST /admin/leader to a random node (instant)
  | "membership" // remove a node from the cluster file; at the end, wipe it and add it back
  | "disk-full"; // fill the tmpfs data dir of one node; free it at the end

export interface Fault {
  readonly kind: FaultKind;
  /** Offset from the start of the fault phase. */
  readonly atMs: number;
  readonly durationMs: number;
  /** Nodes the fault names (groups for partitions: a | b). */
  readonly nodes: readonly string[];
  readonly groups?: readonly (readonly string[])[];
  readonly lossP?: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly ids: readonly string[];
  /** Length of the fault phase. */
  readonly faultMs: number;
  readonly electionMs: number;
  /** Kinds this machine can do (no network faults without namespaces). */
  readonly kinds: readonly FaultKind[];
}

export const NETWORK_KINDS: readonly FaultKind[] = ["partition", "isolate-leader", "one-way", "bridge", "loss"];
export const PROCESS_KINDS: readonly FaultKind[] = ["kill", "pause", "transfer", "membership"];
export const ALL_KINDS: readonly FaultKind[] = [...NETWORK_KINDS, ...PROCESS_KINDS, "disk-full"];

/** Relative weights: the network faults and process faults about equally, the rest rarer. */
const WEIGHT: Record<FaultKind, number> = {
  partition: 3,
  "isolate-leader": 3,
  "one-way": 2,
  bridge: 2,
  loss: 3,
  kill: 3,
  pause: 3,
  transfer: 2,
  membership: 1,
  "disk-full": 1,
};

function pickKind(rng: SeededRng, kinds: readonly FaultKind[]): FaultKind {
  const total = kinds.reduce((s, k) => s + WEIGHT[k], 0);
  let x = rng.next() * total;
  for (const k of kinds) {
    x -= WEIGHT[k];
    if (x < 0) return k;
  }
  return kinds[kinds.length - 1]!;
}

function shuffled<T>(rng: SeededRng, items: readonly T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function faultOf(rng: SeededRng, kind: FaultKind, o: ScheduleOptions, atMs: number): Fault {
  const ids = shuffled(rng, o.ids);
  const e = o.electionMs;
  const durationMs = Math.round(e * (1.5 + rng.next() * 6.5));
  const base = { kind, atMs, durationMs };
  switch (kind) {
    case "partition": {
      const minority = 1 + rng.int(Math.floor((ids.length - 1) / 2));
      const groups = [ids.slice(0, minority), ids.slice(minority)];
      return { ...base, nodes: ids, groups };
    }
    case "bridge": {
      // ids[0] is the bridge: it sees both halves, which do not see each other.
      const rest = ids.slice(1);
      const half = Math.floor(rest.length / 2);
      return { ...base, nodes: [ids[0]!], groups: [rest.slice(0, half), rest.slice(half)] };
    }
    case "one-way":
      return { ...base, nodes: [ids[0]!, ids[1]!] };
    case "loss":
      return { ...base, nodes: [], lossP: rng.pick([0.05, 0.1, 0.2, 0.2, 0.35]) };
    case "isolate-leader":
      return { ...base, nodes: [] };
    case "transfer":
      return { ...base, durationMs: 0, nodes: [ids[0]!] };
    case "membership":
      return { ...base, durationMs: Math.round(e * 4 + rng.next() * e * 4), nodes: [ids[0]!] };
    case "pause":
      return { ...base, durationMs: Math.round(e * (1.5 + rng.next() * 3)), nodes: [ids[0]!] };
    default:
      return { ...base, nodes: [ids[0]!] };
  }
}

/** Faults one after another, each followed by a healthy gap of 1 to 3 election timeouts. */
export function makeSchedule(o: ScheduleOptions): Fault[] {
  const rng = new SeededRng(o.seed);
  const out: Fault[] = [];
  let at = o.electionMs;
  while (at < o.faultMs) {
    const f = faultOf(rng, pickKind(rng, o.kinds), o, at);
    if (at + f.durationMs > o.faultMs) break;
    out.push(f);
    at += f.durationMs + Math.round(o.electionMs * (1 + rng.next() * 2));
  }
  return out;
}

export function describeFault(f: Fault): string {
  const groups = f.groups ? ` ${f.groups.map((g) => `{${g.join(",")}}`).join(" | ")}` : "";
  const nodes = f.nodes.length > 0 && !f.groups ? ` ${f.nodes.join(f.kind === "one-way" ? " -/-> " : ",")}` : f.kind === "bridge" ? ` via ${f.nodes[0]}` : "";
  const p = f.lossP === undefined ? "" : ` ${Math.round(f.lossP * 100)}%`;
  return `+${(f.atMs / 1000).toFixed(1)}s ${f.kind}${nodes}${groups}${p} for ${(f.durationMs / 1000).toFixed(1)}s`;
}

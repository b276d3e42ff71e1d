/**
 * What the benchmarks share: a closed-loop write load (N clients, each one
 * request in flight on a keep-alive connection), latency percentiles, the
 * kill -9 failover probe, a description of the machine, and updating one
 * section of bench/RESULTS.md without touching the others.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import type { HttpFetch } from "../src/platform/http.ts";

/** A 3-node system under test: cairn, or etcd beside it. */
export interface System {
  readonly name: string;
  readonly ids: readonly string[];
  readonly fetch: HttpFetch;
  /** The id every live node agrees leads. */
  leader(): Promise<string>;
  /** One small write through node `id`. */
  write(id: string, client: number, seq: number): { url: string; init: RequestInit };
  ok(status: number): boolean;
  kill(id: string): Promise<void>;
  restart(id: string): Promise<void>;
  /** All nodes up, one leader agreed on, every node caught up. */
  waitHealthy(): Promise<void>;
  close(): Promise<void>;
}

export interface LoadOptions {
  readonly clients: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** One request is abandoned (and counted as an error) after this long. */
  readonly requestTimeoutMs?: number;
}

export interface LoadResult {
  readonly system: string;
  readonly via: string;
  readonly clients: number;
  /** Measured seconds (summed over rounds). */
  readonly seconds: number;
  /** Measured rounds merged into this result. */
  readonly rounds: number;
  readonly writes: number;
  readonly rate: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Failed requests in the measured window, by status (or error name). */
  readonly errors: Record<string, number>;
  /** Every measured latency (ms), ascending. */
  readonly latencies: Float64Array;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

function summarize(base: { system: string; via: string; clients: number; seconds: number; rounds: number }, sorted: Float64Array, errors: Record<string, number>): LoadResult {
  return {
    ...base,
    writes: sorted.length,
    rate: sorted.length / base.seconds,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
    errors,
    latencies: sorted,
  };
}

/** Several rounds of the same load as one result: all latencies, summed time, summed errors. */
export function mergeLoads(parts: LoadResult[]): LoadResult {
  const first = parts[0]!;
  const all = new Float64Array(parts.reduce((n, p) => n + p.latencies.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p.latencies, at);
    at += p.latencies.length;
  }
  const errors: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.errors)) errors[k] = (errors[k] ?? 0) + v;
  const seconds = parts.reduce((n, p) => n + p.seconds, 0);
  return summarize({ system: first.system, via: first.via, clients: first.clients, seconds, rounds: parts.length }, all.sort(), errors);
}

/**
 * `clients` closed loops writing through node `via` for warmupMs + durationMs.
 * Only requests that complete inside the measured window count: the rate is
 * those completions over the window, the latencies are theirs.
 */
export async function runLoad(sys: System, via: string, label: string, o: LoadOptions): Promise<LoadResult> {
  const measureFrom = performance.now() + o.warmupMs;
  const end = measureFrom + o.durationMs;
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const loop = async (client: number): Promise<void> => {
    for (let seq = 0; performance.now() < end; seq++) {
      const { url, init } = sys.write(via, client, seq);
      const t0 = performance.now();
      let outcome: string;
      try {
        const r = await sys.fetch(url, { ...init, signal: AbortSignal.timeout(o.requestTimeoutMs ?? 10_000) });
        await r.arrayBuffer();
        outcome = sys.ok(r.status) ? "ok" : String(r.status);
      } catch (e) {
        outcome = `error ${(e as Error).name}`;
      }
      const t1 = performance.now();
      if (t1 >= measureFrom && t1 <= end) {
        if (outcome === "ok") latencies.push(t1 - t0);
        else errors[outcome] = (errors[outcome] ?? 0) + 1;
      }
      if (outcome !== "ok") await sleep(10);
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, i) => loop(i)));
  const base = { system: sys.name, via: label, clients: o.clients, seconds: o.durationMs / 1000, rounds: 1 };
  return summarize(base, Float64Array.from(latencies).sort(), errors);
}

/** Writes through `id` until one succeeds (deadline `ms`). */
export async function writeUntilOk(sys: System, id: string, ms = 30_000): Promise<void> {
  const deadline = performance.now() + ms;
  for (let seq = 0; ; seq++) {
    const { url, init } = sys.write(id, 9999, seq);
    try {
      const r = await sys.fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      if (sys.ok(r.status)) return;
    } catch {
      /* retry */
    }
    if (performance.now() > deadline) throw new Error(`${sys.name}: no successful write through ${id} within ${ms} ms`);
    await sleep(20);
  }
}

/**
 * From kill -9 of the leader (at t0) to the first successful write. Open-loop
 * probing: every PROBE_EVERY_MS a new write goes to each survivor, whatever
 * earlier attempts are still waiting (a write forwarded to the dead leader
 * may hang until the server gives up on it), so the answer is within
 * PROBE_EVERY_MS of the first moment a fresh write can succeed, for any
 * system. Attempts still open at the end are aborted.
 */
const PROBE_EVERY_MS = 20;
const PROBE_TIMEOUT_MS = 10_000;

async function firstWriteAfter(sys: System, survivors: string[], t0: number, deadlineMs: number): Promise<number> {
  let done: number | undefined;
  const stop = new AbortController();
  const attempts: Promise<void>[] = [];
  const attempt = async (id: string, seq: number): Promise<void> => {
    const { url, init } = sys.write(id, 10_000, seq);
    try {
      const r = await sys.fetch(url, { ...init, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) });
      await r.arrayBuffer();
      if (sys.ok(r.status)) done ??= performance.now() - t0;
    } catch {
      /* not yet */
    }
  };
  for (let seq = 0; done === undefined && performance.now() - t0 < deadlineMs; seq++) {
    for (const id of survivors) attempts.push(attempt(id, seq));
    await sleep(PROBE_EVERY_MS);
  }
  stop.abort();
  await Promise.all(attempts);
  if (done === undefined) throw new Error(`${sys.name}: no successful write within ${deadlineMs} ms of killing the leader`);
  return done;
}

/** `reps` times: kill -9 the leader, time the first successful write, restart it, wait for health. */
export async function runFailovers(sys: System, reps: number, log: (s: string) => void): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    await sys.waitHealthy();
    const leader = await sys.leader();
    const survivors = sys.ids.filter((id) => id !== leader);
    // Open keep-alive connections to the survivors and prove they serve, before the kill.
    for (const s of survivors) await writeUntilOk(sys, s);
    const t0 = performance.now();
    await sys.kill(leader);
    const ms = await firstWriteAfter(sys, survivors, t0, 60_000);
    log(`${sys.name}: failover ${i + 1}/${reps}: killed leader ${leader}, first successful write after ${Math.round(ms)} ms`);
    out.push(ms);
    await sys.restart(leader);
  }
  await sys.waitHealthy();
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "";
}

/** One line per fact about where the numbers were measured. */
export function machine(extra: Record<string, string> = {}): Record<string, string> {
  const cpus = os.cpus();
  const df = sh("df", ["-T", os.tmpdir()]).split("\n")[1]?.split(/\s+/);
  const head = sh("git", ["rev-parse", "--short", "HEAD"]);
  const dirty = sh("git", ["status", "--porcelain", "--", "src"]) !== "";
  return {
    date: new Date().toISOString(),
    cpus: `${os.availableParallelism()} (nproc) x ${cpus[0]?.model ?? "unknown"}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    "temp dir filesystem": df ? `${df[1]} (${os.tmpdir()})` : "unknown",
    bun: process.versions.bun ?? "not bun",
    "git commit": head ? `${head}${dirty ? " (with uncommitted changes in src/)" : ""}` : "unknown",
    ...extra,
  };
}

const RESULTS_HEADER = `# Benchmark results

Each section below is written by the benchmark it names (rerunning one
replaces only its own section). Numbers are from the machine each section
describes; compare runs on the same machine only.
`;

/** Replaces (or appends) the section "## heading" of the results file, keeping every other section. */
export function writeSection(path: string, heading: string, body: string): void {
  let text = existsSync(path) ? readFileSync(path, "utf8") : RESULTS_HEADER;
  const title = `## ${heading}`;
  const section = `${title}\n\n${body.trim()}\n`;
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l === title);
  if (start < 0) {
    text = `${text.trimEnd()}\n\n${section}`;
  } else {
    let end = lines.findIndex((l, i) => i > start && l.startsWith("## "));
    if (end < 0) end = lines.length;
    const before = lines.slice(0, start).join("\n").trimEnd();
    const after = lines.slice(end).join("\n").trim();
    text = `${before}\n\n${section}${after ? `\n${after}\n` : ""}`;
  }
  writeFileSync(path, text);
}

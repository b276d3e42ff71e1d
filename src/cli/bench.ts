/**
 * `cairn bench`: a quick write benchmark against a running cluster: N
 * closed-loop clients POST small changes for a while; prints writes/s and
 * latency percentiles. (bench/ holds the full benchmarks that start their own
 * clusters and compare with etcd.)
 */
import { CLIENT_OPTIONS, ClientError, target } from "./client.ts";
import { expectArgs, intOption, parse } from "./args.ts";
import { schemeHint } from "./scheme.ts";

export const BENCH_USAGE = `cairn bench [--clients 64] [--duration 10] [--tag bench] (--url URL | --config FILE)

Writes small changes from --clients concurrent clients for --duration seconds
through the first node that answers (followers forward to the leader) and
prints writes/s and latency percentiles. The changes stay in the feed.`;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function bench(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, clients: { type: "string" }, duration: { type: "string" }, tag: { type: "string", default: "bench" } } as const, BENCH_USAGE);
  expectArgs(positionals, { min: 0, max: 0 }, BENCH_USAGE);
  const clients = intOption(values.clients, "clients", 64, { min: 1, max: 4096 });
  const seconds = intOption(values.duration, "duration", 10, { min: 1, max: 3600 });
  const t = target(values);
  const url = `${t.urls[0]}/changes`;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (t.token) headers.authorization = `Bearer ${t.token}`;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const end = performance.now() + seconds * 1000;
  const client = async (c: number) => {
    for (let i = 0; performance.now() < end; i++) {
      const t0 = performance.now();
      const res = await t.fetch(url, { method: "POST", headers, body: JSON.stringify({ data: { c, i }, tags: [values.tag] }) }).catch((e: Error) => {
        firstError ??= e.message;
        return null;
      });
      const text = res ? await res.text() : "";
      if (res?.status === 201) latencies.push(performance.now() - t0);
      else {
        errors++;
        firstError ??= `HTTP ${res?.status}: ${text.slice(0, 200)}`;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  const secs = (performance.now() - started) / 1000;
  if (latencies.length === 0) {
    const hint = await schemeHint(t.urls[0]!);
    throw new ClientError(`no write succeeded in ${seconds} s (${errors} errors, the first: ${firstError ?? "none"}): is ${t.urls[0]} reachable and the cluster ready?${hint ? ` ${hint}` : ""}`, 0);
  }
  latencies.sort((a, b) => a - b);
  const ms = (v: number) => Math.round(v * 10) / 10;
  console.log(
    JSON.stringify({
      clients,
      seconds: Math.round(secs * 10) / 10,
      writes: latencies.length,
      writesPerSec: Math.round(latencies.length / secs),
      latencyMs: { p50: ms(percentile(latencies, 50)), p90: ms(percentile(latencies, 90)), p99: ms(percentile(latencies, 99)), max: ms(latencies[latencies.length - 1]!) },
      errors,
    }),
  );
  return 0;
}

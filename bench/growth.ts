/**
 * cairn as its state grows (issue 11's growth targets):
 *
 *   bun run bench/growth.ts [--feed 1000000] [--keys 100000] [--seconds 10] [--readers 1000] [--rounds 5] [--quick] [--out bench/RESULTS.md]
 *
 * A 3-node cairn (`cairn init`, TLS off: no tls section, http:// API,
 * `serve --insecure`; API tokens on). Empty: resident memory (RSS) of each
 * node, restart to ready of each node, and `PUT /kv` under wrk at 64
 * connections. Then `--feed` changes in batches of 500 (`POST /changes`
 * arrays) and `--keys` keys (`POST /txn`, 128 puts each), 200-byte values;
 * the same measurements again (RSS also after the writes). Last, `--readers`
 * long-polling feed readers (`GET /changes?block=30`) and as many SSE
 * subscribers (`GET /changes/stream`), spread over the nodes on their own
 * TCP connections; `--rounds` times one change is written and the time from
 * sending it to each reader's first byte of it is taken. `--quick` (smoke):
 * 20,000 changes, 2,000 keys, 1 s runs, 50 readers, 2 rounds; it writes results only with --out.
 */
import { connect, type Socket } from "node:net";
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { BINARY, resultsPath, RUN_OPTIONS, waitFor, whole } from "./shared.ts";
import { startCairn, type CairnSystem } from "./cairn.ts";
import { machine, percentile, writeSection } from "./lib.ts";
import { busyNote, ensureTools, rssMb, runWrk, ToolsUnavailableError, type WrkOptions, type WrkRun } from "./wrkrun.ts";

const { values: args } = parseArgs({
  options: {
    feed: { type: "string" },
    keys: { type: "string" },
    readers: { type: "string" },
    rounds: { type: "string" },
    ...RUN_OPTIONS,
  },
});

const QUICK = args.quick!;
const FEED = whole("feed", args.feed, QUICK ? 20_000 : 1_000_000, 0);
const KEYS = whole("keys", args.keys, QUICK ? 2_000 : 100_000, 0);
const SECONDS = whole("seconds", args.seconds, QUICK ? 1 : 10, 1);
const READERS = whole("readers", args.readers, QUICK ? 50 : 1000, 1);
const ROUNDS = whole("rounds", args.rounds, QUICK ? 2 : 5, 1);
const OUT = resultsPath(args.out, QUICK);
const FEED_BATCH = 500;
const TXN_PUTS = 128;
const LOAD_CONCURRENCY = 4;
const CONNECTIONS = 64;
const VALUE = "v".repeat(200);
const SECTION = "Growth (bench/growth.ts)";
const log = (s: string) => console.error(`[growth] ${s}`);

const authOf = (s: CairnSystem) => ({ authorization: `Bearer ${s.token}` });

interface Phase {
  readonly name: string;
  readonly rssMb: Record<string, number>;
  readonly readyMs: Record<string, number>;
  readonly wrk: WrkRun;
  readonly rssAfterMb: Record<string, number>;
  readonly dataMb: Record<string, number>;
}

const rssAll = (s: CairnSystem) => Object.fromEntries(s.ids.map((id) => [id, rssMb(s.pid(id))]));

function dataMb(s: CairnSystem): Record<string, number> {
  return Object.fromEntries(s.ids.map((id) => {
    const r = spawnSync("du", ["-sk", s.cluster.dataDir(id)], { encoding: "utf8" });
    return [id, Number(r.stdout.split(/\s+/)[0]) / 1024];
  }));
}

/** SIGTERM of each node in turn, then from its start to its first 200 on GET /ready. */
async function restartToReady(s: CairnSystem): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const id of s.ids) {
    await s.waitHealthy();
    await s.cluster.stop(id, 30_000);
    const t0 = performance.now();
    await s.restart(id);
    await waitFor(`${id} ready after its restart`, async () => {
      const r = await s.fetch(`${s.url(id)}/ready`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      return r.status === 200;
    }, 120_000, 20);
    out[id] = performance.now() - t0;
    log(`${id}: restart to ready ${Math.round(out[id]!)} ms`);
  }
  await s.waitHealthy();
  return out;
}

function putRequest(s: CairnSystem, leader: string, keyPrefix: string): WrkOptions {
  return {
    url: s.url(leader), connections: CONNECTIONS, seconds: SECONDS, keyPrefix,
    request: { method: "PUT", path: `"/kv/" .. key`, body: "VALUE", headers: { ...authOf(s), "content-type": "application/octet-stream" }, consts: { VALUE } },
  };
}

async function putRun(s: CairnSystem, label: string): Promise<WrkRun> {
  const r = await runWrk(putRequest(s, await s.leader(), `g-${label}-`));
  log(`${label}: PUT /kv at ${CONNECTIONS}: ${Math.round(r.okPerSec)}/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors}`);
  return r;
}

async function measure(s: CairnSystem, name: string): Promise<Phase> {
  await s.waitHealthy();
  const rss = rssAll(s);
  const readyMs = await restartToReady(s);
  // Both phases are measured in the same state: restarted nodes warmed up by 2 s of the same load, unmeasured.
  await runWrk({ ...putRequest(s, await s.leader(), `g-${name}-warm-`), seconds: 2 });
  const wrk = await putRun(s, name);
  await s.waitHealthy();
  return { name, rssMb: rss, readyMs, wrk, rssAfterMb: rssAll(s), dataMb: dataMb(s) };
}

/** `n` requests made by `make(i)`, `LOAD_CONCURRENCY` at a time, each must answer 2xx. */
async function pump(n: number, make: (i: number) => { path: string; body: string }, s: CairnSystem, leader: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      const { path, body } = make(i);
      const r = await s.fetch(`${s.url(leader)}${path}`, { method: "POST", headers: { ...authOf(s), "content-type": "application/json" }, body });
      const text = await r.text();
      if (r.status < 200 || r.status > 299) throw new Error(`loading: POST ${path} answered ${r.status}: ${text.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, worker));
}

async function load(s: CairnSystem): Promise<{ feedSec: number; keysSec: number }> {
  const leader = await s.leader();
  const t0 = performance.now();
  const batches = Math.ceil(FEED / FEED_BATCH);
  await pump(batches, (b) => {
    const items = Array.from({ length: Math.min(FEED_BATCH, FEED - b * FEED_BATCH) }, (_, j) => ({ data: { i: b * FEED_BATCH + j, v: VALUE }, tags: ["load"] }));
    return { path: "/changes", body: JSON.stringify(items) };
  }, s, leader);
  const feedSec = (performance.now() - t0) / 1000;
  log(`loaded ${FEED} changes in ${feedSec.toFixed(1)} s`);
  const t1 = performance.now();
  await pump(Math.ceil(KEYS / TXN_PUTS), (b) => {
    const success = Array.from({ length: Math.min(TXN_PUTS, KEYS - b * TXN_PUTS) }, (_, j) => ({ op: "put", key: `k-${b * TXN_PUTS + j}`, value: VALUE }));
    return { path: "/txn", body: JSON.stringify({ success }) };
  }, s, leader);
  const keysSec = (performance.now() - t1) / 1000;
  log(`loaded ${KEYS} keys in ${keysSec.toFixed(1)} s`);
  return { feedSec, keysSec };
}

// ---------------------------------------------------------------- fan-out to readers

interface Reader {
  readonly socket: Socket;
  /** performance.now() when the marker arrived (NaN until then). */
  gotAt: number;
  tail: string;
}

/** One raw HTTP/1.1 request on its own TCP connection; `onData` sees every chunk of the answer. */
function openReader(url: string, path: string, token: string, marker: () => string): Reader {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  const r: Reader = { socket, gotAt: NaN, tail: "" };
  socket.setNoDelay(true);
  socket.on("connect", () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${token}\r\nAccept: */*\r\n\r\n`));
  socket.on("data", (d: Buffer) => {
    if (!Number.isNaN(r.gotAt)) return;
    const text = r.tail + d.toString("latin1");
    if (text.includes(marker())) r.gotAt = performance.now();
    else r.tail = text.slice(-200);
  });
  socket.on("error", () => {});
  return r;
}

async function waitingTotal(s: CairnSystem): Promise<number> {
  const ns = await Promise.all(s.ids.map(async (id) => {
    const r = await s.fetch(`${s.url(id)}/metrics`, { headers: authOf(s) });
    const m = /^cairn_http_waiting (\d+)$/m.exec(await r.text());
    return m ? Number(m[1]) : 0;
  }));
  return ns.reduce((a, b) => a + b, 0);
}

async function feedLast(s: CairnSystem): Promise<number> {
  const st = await s.cluster.status(await s.leader());
  return st.feed.last as number;
}

interface FanOut {
  readonly longPollMs: number[];
  readonly sseMs: number[];
  /** Reader answers that did not arrive within 10 s of the write. */
  missed: number;
  readonly writeMs: number[];
  /** The same arrivals, from the write's answer instead of its sending (negative: before the answer). */
  readonly longPollAfterAckMs: number[];
  readonly sseAfterAckMs: number[];
}

/** `ROUNDS` times: one change, tagged "fanout", reaches READERS long-pollers and READERS SSE subscribers. */
async function fanOut(s: CairnSystem): Promise<FanOut> {
  let marker = "";
  const out: FanOut = { longPollMs: [], sseMs: [], missed: 0, writeMs: [], longPollAfterAckMs: [], sseAfterAckMs: [] };
  const since = await feedLast(s);
  const sse = Array.from({ length: READERS }, (_, i) => openReader(s.url(s.ids[i % 3]!), `/changes/stream?since=${since}&tag=fanout`, s.token, () => marker));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const from = await feedLast(s);
      const polls = Array.from({ length: READERS }, (_, i) => openReader(s.url(s.ids[(i + 1) % 3]!), `/changes?since=${from}&tag=fanout&block=30`, s.token, () => marker));
      try {
        await waitFor(`${2 * READERS} readers waiting`, async () => (await waitingTotal(s)) >= 2 * READERS, 60_000, 100);
        for (const r of sse) r.gotAt = NaN;
        marker = `fanout-${round}-${Math.random().toString(36).slice(2)}`;
        const t0 = performance.now();
        const w = await s.fetch(`${s.url(await s.leader())}/changes`, { method: "POST", headers: { ...authOf(s), "content-type": "application/json" }, body: JSON.stringify({ data: { m: marker }, tags: ["fanout"] }) });
        await w.arrayBuffer();
        const acked = performance.now();
        out.writeMs.push(acked - t0);
        if (w.status !== 201 && w.status !== 200) throw new Error(`the fan-out write answered ${w.status}`);
        const all = [...polls, ...sse];
        await waitFor("every reader to get the change", () => all.every((r) => !Number.isNaN(r.gotAt)), 10_000, 10).catch(() => undefined);
        out.missed += all.filter((r) => Number.isNaN(r.gotAt)).length;
        for (const r of polls.filter((x) => !Number.isNaN(x.gotAt))) {
          out.longPollMs.push(r.gotAt - t0);
          out.longPollAfterAckMs.push(r.gotAt - acked);
        }
        for (const r of sse.filter((x) => !Number.isNaN(x.gotAt))) {
          out.sseMs.push(r.gotAt - t0);
          out.sseAfterAckMs.push(r.gotAt - acked);
        }
        log(`fan-out round ${round + 1}: write ${Math.round(out.writeMs.at(-1)!)} ms; long-poll p99 ${p(out.longPollMs.slice(-READERS), 99)} ms, SSE p99 ${p(out.sseMs.slice(-READERS), 99)} ms`);
      } finally {
        for (const r of polls) r.socket.destroy();
      }
      await waitFor("the long polls closed", async () => (await waitingTotal(s)) <= READERS, 30_000, 50);
    }
  } finally {
    for (const r of sse) r.socket.destroy();
  }
  return out;
}

const p = (xs: number[], q: number) => (xs.length ? percentile(Float64Array.from(xs).sort(), q).toFixed(1) : "-");

// ---------------------------------------------------------------- the report

function verdicts(empty: Phase, loaded: Phase, f: FanOut): string[][] {
  const rssMax = Math.max(...Object.values(loaded.rssMb), ...Object.values(loaded.rssAfterMb));
  const readyMax = Math.max(...Object.values(loaded.readyMs));
  const ratio = loaded.wrk.okPerSec / empty.wrk.okPerSec;
  const lp = Number(p(f.longPollMs, 99));
  const ss = Number(p(f.sseMs, 99));
  const v = (met: boolean, what: string) => `**${met ? "met" : "missed"}**: ${what}`;
  return [
    ["resident memory under 150 MB per node (loaded, before and after the writes)", v(rssMax < 150, `max ${rssMax.toFixed(0)} MB`)],
    ["restart to ready under 5 s (loaded)", v(readyMax < 5000, `max ${(readyMax / 1000).toFixed(2)} s`)],
    [`PUT /kv at ${CONNECTIONS} within 10% of an empty store's`, v(ratio >= 0.9, `${ratio.toFixed(2)}x (${Math.round(loaded.wrk.okPerSec)} vs ${Math.round(empty.wrk.okPerSec)}/s), p99 ${loaded.wrk.p99} vs ${empty.wrk.p99} ms`)],
    [`a change reaches ${READERS} long-polling readers, p99 under 50 ms`, v(lp < 50 && f.missed === 0, `p99 ${lp} ms`)],
    [`a change reaches ${READERS} SSE subscribers, p99 under 50 ms`, v(ss < 50 && f.missed === 0, `p99 ${ss} ms${f.missed ? `, ${f.missed} readers missed a change` : ""}`)],
  ];
}

const perNode = (r: Record<string, number>, d = 0) => Object.entries(r).map(([id, x]) => `${id} ${x.toFixed(d)}`).join(", ");

function report(o: { empty: Phase; loaded: Phase; times: { feedSec: number; keysSec: number }; f: FanOut; facts: Record<string, string>; command: string; busy: string | null }): string {
  const phases = [o.empty, o.loaded];
  const rows = phases.map((ph) => `| ${ph.name} | ${perNode(ph.rssMb)} | ${perNode(ph.rssAfterMb)} | ${perNode(ph.dataMb)} | ${perNode(ph.readyMs)} | ${Math.round(ph.wrk.okPerSec)} | ${ph.wrk.p50} | ${ph.wrk.p99} | ${ph.wrk.errors} |`);
  return `Written by \`bench/growth.ts\`${QUICK ? " (a --quick smoke run: its numbers mean nothing)" : ""}.${o.busy ? `\n\n**Warning**: ${o.busy}.\n\n` : " "} Command (from the repository root, after \`npm run build\`):

\`\`\`sh
${o.command}
\`\`\`

3 nodes of dist/cairn (\`cairn init\`, TLS off: no \`tls\` section, \`http://\`
API, \`serve --insecure\`; API tokens on), SQLite \`synchronous=FULL\`. "loaded":
after ${FEED.toLocaleString("en-US")} changes in batches of ${FEED_BATCH} (\`POST /changes\`, ${LOAD_CONCURRENCY} at a time: ${o.times.feedSec.toFixed(1)} s)
and ${KEYS.toLocaleString("en-US")} keys (\`POST /txn\` with ${TXN_PUTS} puts: ${o.times.keysSec.toFixed(1)} s), 200-byte values. RSS from
/proc/PID/status first, then again after the restarts and the write run; restart to ready: SIGTERM
of each node in turn, then from its start to its first 200 on \`GET /ready\`;
writes: wrk \`PUT /kv\` (a new key per write) at ${CONNECTIONS} connections for ${SECONDS} s
(the same script as bench/wrk.ts).

| state | RSS MB per node | RSS MB after the restarts and the writes | data dir MB | restart to ready ms | PUT /kv writes/s | p50 ms | p99 ms | errors |
|---|---|---|---|---|---:|---:|---:|---:|
${rows.join("\n")}

Fan-out (loaded): ${READERS} long-polling readers (\`GET /changes?since=LAST&tag=fanout&block=30\`)
and ${READERS} SSE subscribers (\`GET /changes/stream?tag=fanout\`), each on its own TCP
connection, spread over the 3 nodes, all shown waiting in \`cairn_http_waiting\`
first; then one change is written through the leader and the time is from
sending it to each reader's first bytes that hold it (${ROUNDS} rounds; the readers
are one JS process on the same machine). The write itself took ${o.f.writeMs.map((x) => Math.round(x)).join(", ")} ms (its
commit is part of the time to the readers; the last column starts at its answer
instead, negative when a reader had it first). The target is on the time from sending.

| readers | answers | p50 ms | p99 ms | max ms | p50 / p99 ms after the write's answer |
|---|---:|---:|---:|---:|---|
| long poll | ${o.f.longPollMs.length} | ${p(o.f.longPollMs, 50)} | ${p(o.f.longPollMs, 99)} | ${p(o.f.longPollMs, 100)} | ${p(o.f.longPollAfterAckMs, 50)} / ${p(o.f.longPollAfterAckMs, 99)} |
| SSE | ${o.f.sseMs.length} | ${p(o.f.sseMs, 50)} | ${p(o.f.sseMs, 99)} | ${p(o.f.sseMs, 100)} | ${p(o.f.sseAfterAckMs, 50)} / ${p(o.f.sseAfterAckMs, 99)} |

### Targets of issue 11 (growth)

| target | result |
|---|---|
${verdicts(o.empty, o.loaded, o.f).map(([t, v]) => `| ${t} | ${v} |`).join("\n")}

### Machine

${Object.entries(o.facts).map(([k, v]) => `- ${k}: ${v}`).join("\n")}
`;
}

async function main(): Promise<void> {
  try {
    ensureTools(log);
  } catch (e) {
    if (!(e instanceof ToolsUnavailableError)) throw e;
    console.error(`[growth] SKIPPED: ${e.message}`);
    process.exit(3);
  }
  const loadStart = loadavg().map((x) => x.toFixed(2)).join(" / ");
  const busy = busyNote();
  if (busy) log(`WARNING: ${busy}`);
  const t0 = performance.now();
  const s = await startCairn({ tls: false });
  let body: string;
  try {
    const empty = await measure(s, "empty");
    const times = await load(s);
    // The load leaves hundreds of MB of dirty pages that the kernel writes back over the next ~30 s,
    // slowing every fsync meanwhile: flush them first, so that "loaded" measures the state's size, not the burst.
    spawnSync("sync");
    const loaded = await measure(s, "loaded");
    const f = await fanOut(s);
    const version = `${spawnSync(BINARY, ["version"], { encoding: "utf8" }).stdout?.trim() ?? "?"}, built ${statSync(BINARY).mtime.toISOString()}`;
    const facts = machine({
      cairn: `${version} (dist/cairn, bun build --compile)`,
      "load average (1/5/15 min)": `${loadStart} at the start, ${loadavg().map((x) => x.toFixed(2)).join(" / ")} at the end`,
      "run time": `${Math.round((performance.now() - t0) / 1000)} s`,
    });
    const command = ["bun run bench/growth.ts", QUICK ? "--quick" : "", ...(["feed", "keys", "seconds", "readers", "rounds"] as const).filter((k) => args[k] !== undefined).map((k) => `--${k} ${args[k]}`)].filter(Boolean).join(" ");
    body = report({ empty, loaded, times, f, facts, command, busy });
  } finally {
    await s.close();
  }
  if (OUT) {
    writeSection(OUT, SECTION, body);
    log(`wrote the section "${SECTION}" of ${OUT}`);
  }
  console.log(`## ${SECTION}\n\n${body}`);
  process.exit(0);
}

if (import.meta.main) await main();

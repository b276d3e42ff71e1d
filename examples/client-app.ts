/**
 * An edge application on cairn/client: a sensor that records its readings
 * through the outbox (they are kept on local disk while the cluster is out
 * of reach and delivered once each, in order, when it is back), keeps its
 * settings in the key-value store with compare-and-set, and follows the
 * readings of every sensor from the change feed.
 *
 *   cairn init --nodes 3 --dir mycluster        # prints the admin token
 *   (start the three nodes: see the README)
 *   CAIRN_TOKEN=cairn_... bun run examples/client-app.ts mycluster/cluster.json [seconds]
 *
 * Runs on Bun, Deno (deno run -A examples/client-app.ts ...) and, without
 * the outbox's SQLite before Node 22.5, on Node from a bundle.
 */
import { CairnClient, ConflictError, UnavailableError } from "cairn/client"; // the package export (src/client/index.ts)

declare const process: { argv: string[]; env: Record<string, string | undefined>; exit(code: number): never };
const args = process.argv.slice(2);
const clusterFile = args[0];
if (!clusterFile) {
  console.error("usage: CAIRN_TOKEN=... bun run examples/client-app.ts CLUSTER.json [seconds]");
  process.exit(2);
}
const seconds = Number(args[1] ?? "10");
const sensor = process.env.SENSOR ?? `sensor-${Math.floor(Math.random() * 1000)}`;

// The nodes, the CA (tls.ca beside the cluster file) and the token (CAIRN_TOKEN) come from the options.
const client = new CairnClient({ cluster: clusterFile });

// Settings: create them once (If-None-Match: *), then bump a counter with compare-and-set.
const key = `sensors/${sensor}/settings`;
await client.put(key, { intervalMs: 500, starts: 0 }, { ifNoneMatch: "*" }).catch((e) => {
  if (!(e instanceof ConflictError)) throw e; // exists already: fine
});
for (;;) {
  const cur = (await client.get(key))!;
  const s = cur.json<{ intervalMs: number; starts: number }>();
  try {
    await client.put(key, { ...s, starts: s.starts + 1 }, { ifMatch: cur.version });
    console.log(`${sensor}: start #${s.starts + 1}, reading every ${s.intervalMs} ms`);
    break;
  } catch (e) {
    if (!(e instanceof ConflictError)) throw e; // someone else changed it: read again
  }
}

// Follow every sensor's readings from now on (resumes by itself after failures).
const stop = new AbortController();
const from = (await client.status()).feed.last;
const following = (async () => {
  for await (const ch of client.follow({ since: from, tags: ["reading"], signal: stop.signal, blockSec: 5 })) {
    console.log(`  feed #${ch.index}: ${JSON.stringify(ch.data)}`);
  }
})().catch((e) => {
  if (!stop.signal.aborted) throw e;
});

// Readings go through the outbox: accepted at once, delivered when the cluster can take them.
const box = await client.outbox({
  path: `${sensor}.outbox.db`,
  onDelivered: (d) => console.log(`  delivered write ${d.seq} as feed #${d.index}`),
  onRetry: (e) => e instanceof UnavailableError && console.log(`  cluster unavailable, keeping readings: ${e.code}`),
});
const until = Date.now() + seconds * 1000;
while (Date.now() < until) {
  const { seq } = await box.post({ sensor, celsius: 20 + Math.round(Math.random() * 50) / 10, at: new Date().toISOString() }, { tags: ["reading"] });
  const st = box.status();
  console.log(`${sensor}: reading ${seq} stored locally (${st.pending} pending, ${st.delivered} delivered)`);
  await new Promise((r) => setTimeout(r, 500));
}
await box.flush({ timeoutMs: 30_000 }).catch((e) => console.log(`not all delivered yet (they stay in the outbox): ${(e as Error).message}`));
await box.close();
stop.abort();
await following;
client.close();

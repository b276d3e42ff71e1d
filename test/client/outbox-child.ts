/**
 * The application of the outbox test, run as a child process so the test can
 * kill -9 it: opens the outbox at OUTBOX_PATH, posts {n} for n after the
 * outbox's last seq up to OUTBOX_TOTAL, then waits until all is delivered.
 * Prints "acked N" (every post, once committed locally), "delivered SEQ INDEX"
 * and "flushed" on stdout.
 */
import { CairnClient } from "../../src/client/index.ts";

const env = (k: string): string => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const total = Number(env("OUTBOX_TOTAL"));
const client = new CairnClient({ cluster: env("CAIRN_CLUSTER"), token: env("CAIRN_TOKEN"), timeoutMs: 5000, attemptTimeoutMs: 3000 });
const out: string[] = [];
const flushOut = () => {
  if (out.length) process.stdout.write(out.splice(0).join(""));
};
const box = await client.outbox({
  path: env("OUTBOX_PATH"),
  batchItemsMax: Number(process.env.OUTBOX_BATCH ?? "200"),
  onDelivered: (d) => out.push(`delivered ${d.seq} ${d.index}${d.replayed ? " replayed" : ""}\n`),
  onFailed: (f) => out.push(`failed ${f.seq} ${f.error}\n`),
});
const timer = setInterval(flushOut, 20);
const from = box.status().lastSeq;
out.push(`start ${from}\n`);
for (let n = from + 1; n <= total; n++) {
  await box.post({ n }, { tags: ["outbox"] });
  out.push(`acked ${n}\n`);
  if (n % 200 === 0) await new Promise((r) => setTimeout(r, 0)); // let stdout and delivery run
}
out.push("posted\n");
await box.flush({ timeoutMs: 600_000 });
out.push("flushed\n");
flushOut();
clearInterval(timer);
await box.close();
client.close();

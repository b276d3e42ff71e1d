/**
 * The client on another runtime (Deno from source, Node from a bundle):
 * post, get, put with a conflict, follow one change, and (where SQLite is
 * there) the outbox. Prints "smoke ok" at the end; any failure exits non-zero.
 */
import { CairnClient, ConflictError } from "../../src/client/index.ts";

declare const process: { env: Record<string, string | undefined>; exit(code: number): never };
const env = process.env;
const client = new CairnClient({ cluster: env.CAIRN_CLUSTER!, token: env.CAIRN_TOKEN! });
const p = await client.post({ runtime: env.SMOKE_RUNTIME }, { tags: ["smoke"] });
const got = await client.getChange(p.index);
if ((got.data as { runtime: string }).runtime !== env.SMOKE_RUNTIME) throw new Error(`read back ${JSON.stringify(got)}`);
const w = await client.put(`smoke/${env.SMOKE_RUNTIME}`, { v: 1 });
const conflict = await client.put(`smoke/${env.SMOKE_RUNTIME}`, { v: 2 }, { ifMatch: w.version + 1 }).catch((e) => e);
if (!(conflict instanceof ConflictError)) throw new Error(`expected a ConflictError, got ${String(conflict)}`);
for await (const ch of client.follow({ since: p.index - 1, tags: ["smoke"] })) {
  if (ch.index !== p.index) throw new Error(`follow gave ${ch.index}, wanted ${p.index}`);
  break;
}
if (env.SMOKE_OUTBOX) {
  const box = await client.outbox({ path: env.SMOKE_OUTBOX });
  const { seq } = await box.post({ outbox: env.SMOKE_RUNTIME }, { tags: ["smoke"] });
  await box.flush({ timeoutMs: 20_000 });
  const e = box.entry(seq)!;
  const ch = await client.getChange(e.index!);
  if ((ch.data as { outbox: string }).outbox !== env.SMOKE_RUNTIME) throw new Error(`outbox write read back as ${JSON.stringify(ch)}`);
  await box.close();
}
client.close();
console.log("smoke ok");

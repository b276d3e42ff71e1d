/**
 * A 3-node cairn of the built binary (dist/cairn) for the side-by-side
 * benchmarks: from `cairn init` (its timings, heartbeat 100 ms and election
 * 1000 ms; SQLite synchronous FULL; API tokens on), either as init writes it
 * (HTTPS API, mutual TLS between peers) or with TLS off (no "tls" section in
 * the cluster file, http:// API addresses, `serve --insecure`).
 */
import { E2ECluster, ensureBinary, waitFor } from "./shared.ts";
import type { System } from "./lib.ts";

export interface CairnSystem extends System {
  readonly cluster: E2ECluster;
  /** Node `id`'s API base URL. */
  url(id: string): string;
  pid(id: string): number | undefined;
  /** The admin token `cairn init` printed (wrk sends it as a header). */
  readonly token: string;
}

/**
 * `tag`: the tag of the changes `write` makes (bench/write.ts's section names
 * "bench"; "failover" when not given).
 */
export async function startCairn(o: { tls: boolean; tag?: string }): Promise<CairnSystem> {
  ensureBinary();
  const c = await E2ECluster.init(3, (f) => {
    f.raft = { heartbeatMs: 100, electionMs: 1000 }; // what `cairn init` writes (the harness shortens it)
    if (!o.tls) {
      delete f.tls;
      for (const n of f.nodes) n.api = n.api.replace(/^https:/, "http:");
    }
  });
  const ids = ["n1", "n2", "n3"];
  const args = o.tls ? [] : ["--insecure"];
  for (const id of ids) c.start(id, { args });
  try {
    await c.waitVoters(3, 60_000);
  } catch (e) {
    await c.close();
    throw e;
  }
  // write() runs once a request in bench/write.ts's closed loops: read the cluster file once, not per request.
  const apis = new Map(ids.map((id) => [id, c.api(id)]));
  const sys: CairnSystem = {
    name: "cairn",
    ids,
    cluster: c,
    token: c.token,
    fetch: c.fetch,
    url: (id) => c.api(id),
    pid: (id) => c.procs.get(id)?.child.pid,
    leader: () => c.leader(30_000),
    write: (id, client, seq) => ({
      url: `${apis.get(id)}/changes`,
      init: {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ data: { c: client, s: seq, v: "bench-payload" }, tags: [o.tag ?? "failover"] }),
      },
    }),
    // POST /changes answers 201 once the change is committed and applied (src/api/encode.ts).
    ok: (s) => s === 201,
    kill: (id) => c.signal(id, "SIGKILL"),
    restart: async (id) => {
      c.start(id, { args });
    },
    waitHealthy: async () => {
      await waitFor("cairn healthy and caught up", async () => {
        if (c.procs.size !== ids.length) return false;
        const st = await Promise.all(ids.map((id) => c.status(id).catch(() => null)));
        const leader = st[0]?.leader?.id;
        if (!leader || st.some((s) => s?.leader?.id !== leader)) return false;
        const commit = st.find((s) => s.id === leader)!.index.commit;
        return st.every((s) => s.index.applied === commit);
      }, 60_000, 100);
    },
    close: () => c.close(),
  };
  return sys;
}

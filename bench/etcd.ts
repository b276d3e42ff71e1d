/**
 * A 3-member etcd on loopback for a side-by-side run (only when `etcd` is on
 * PATH, e.g. `apt-get install -y etcd-server`): the same TLS as cairn (the
 * CA and node certificates of a `cairn init`, mutual TLS between members,
 * HTTPS for clients), or with `tls: false` none (plain http), the same timings (heartbeat 100 ms, election 1000 ms),
 * etcd's default fsync of every WAL write. Writes are PUTs through etcd's
 * HTTP/JSON gateway (POST /v3/kv/put), which a follower forwards to the
 * leader as cairn does.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { httpClient } from "../src/platform/http.ts";
import { BINARY, ensureBinary } from "../harness/cluster.ts";
import { freePorts, waitFor } from "../harness/ports.ts";
import type { System } from "./lib.ts";

/** etcd as a System, plus what an external load generator needs. */
export interface EtcdSystem extends System {
  /** Member `id`'s client URL (https:// with TLS, else http://). */
  url(id: string): string;
  /** The pid of member `id`'s process, while it runs. */
  pid(id: string): number | undefined;
}

export interface EtcdOptions {
  /** TLS for clients and peers (certificates from a `cairn init`), or plain http. Default true. */
  readonly tls?: boolean;
}

export function etcdVersion(): string | null {
  const r = spawnSync("etcd", ["--version"], { encoding: "utf8" });
  if (r.status !== 0) return null;
  return /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? "unknown";
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

export async function startEtcd(o: EtcdOptions = {}): Promise<EtcdSystem> {
  const tlsOn = o.tls ?? true;
  const scheme = tlsOn ? "https" : "http";
  ensureBinary();
  const dir = mkdtempSync(join(tmpdir(), "cairn-bench-etcd-"));
  const init = spawnSync(BINARY, ["init", "--nodes", "3", "--dir", join(dir, "certs")], { encoding: "utf8" });
  if (init.status !== 0) throw new Error(`cairn init for etcd's certificates failed: ${init.stderr}`);
  const tls = join(dir, "certs", "tls");
  const ids = ["e1", "e2", "e3"];
  const ports = await freePorts(6);
  const client = new Map(ids.map((id, i) => [id, `${scheme}://127.0.0.1:${ports[2 * i]}`]));
  const peer = new Map(ids.map((id, i) => [id, `${scheme}://127.0.0.1:${ports[2 * i + 1]}`]));
  const initialCluster = ids.map((id) => `${id}=${peer.get(id)}`).join(",");
  const procs = new Map<string, { child: ChildProcess; exited: Promise<unknown> }>();
  const fetch = httpClient({ ca: readFileSync(join(dir, "certs", "ca", "ca.pem"), "utf8") });

  const start = (id: string) => {
    const n = `n${id.slice(1)}`;
    const args = [
      "--name", id, "--data-dir", join(dir, id),
      "--listen-client-urls", client.get(id)!, "--advertise-client-urls", client.get(id)!,
      "--listen-peer-urls", peer.get(id)!, "--initial-advertise-peer-urls", peer.get(id)!,
      "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
      ...(tlsOn ? [
        "--cert-file", join(tls, n, "node.pem"), "--key-file", join(tls, n, "node.key"),
        "--peer-cert-file", join(tls, n, "node.pem"), "--peer-key-file", join(tls, n, "node.key"),
        "--peer-trusted-ca-file", join(tls, n, "ca.pem"), "--peer-client-cert-auth",
      ] : []),
      "--heartbeat-interval", "100", "--election-timeout", "1000",
      "--logger", "zap", "--log-level", "warn",
    ];
    const fd = openSync(join(dir, `${id}.log`), "a");
    const child = spawn("etcd", args, { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    procs.set(id, { child, exited: new Promise((r) => child.once("exit", r)) });
  };

  const status = async (id: string): Promise<{ member: string; leader: string; applied: number } | null> => {
    try {
      const r = await fetch(`${client.get(id)}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(2000) });
      if (r.status !== 200) return null;
      const b = (await r.json()) as { header: { member_id: string }; leader: string; raftAppliedIndex: string };
      return { member: b.header.member_id, leader: b.leader, applied: Number(b.raftAppliedIndex) };
    } catch {
      return null;
    }
  };

  /** [leader name, every live member's applied index] once all live members agree on a leader. */
  const view = async (): Promise<{ leader: string; applied: number[] } | undefined> => {
    const live = ids.filter((id) => procs.has(id));
    const st = await Promise.all(live.map(status));
    if (st.some((s) => s === null)) return undefined;
    const leaders = new Set(st.map((s) => s!.leader));
    if (leaders.size !== 1) return undefined;
    const i = st.findIndex((s) => s!.member === st[0]!.leader);
    return i < 0 ? undefined : { leader: live[i]!, applied: st.map((s) => s!.applied) };
  };

  const sys: EtcdSystem = {
    name: "etcd",
    ids,
    fetch,
    url: (id) => client.get(id)!,
    pid: (id) => procs.get(id)?.child.pid,
    leader: async () => (await waitFor("an agreed etcd leader", view, 30_000, 50)).leader,
    write: (id, c, s) => ({
      url: `${client.get(id)}/v3/kv/put`,
      init: {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: b64(`bench/${c}/${s}`), value: b64(JSON.stringify({ c, s, v: "bench-payload" })) }),
      },
    }),
    ok: (s) => s === 200,
    kill: async (id) => {
      const p = procs.get(id);
      if (!p) return;
      p.child.kill("SIGKILL");
      await p.exited;
      procs.delete(id);
    },
    restart: async (id) => start(id),
    waitHealthy: async () => {
      await waitFor("etcd healthy and caught up", async () => {
        if (procs.size !== ids.length) return false;
        const v = await view();
        return v !== undefined && v.applied.every((a) => a === v.applied[0]);
      }, 60_000, 100);
    },
    close: async () => {
      await Promise.all([...procs.keys()].map((id) => sys.kill(id)));
      fetch.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const id of ids) start(id);
  try {
    await sys.waitHealthy();
  } catch (e) {
    const logs = ids.map((id) => `${id}: ${readFileSync(join(dir, `${id}.log`), "utf8").split("\n").slice(-5).join("\n")}`).join("\n");
    await sys.close();
    throw new Error(`etcd did not form: ${(e as Error).message}\n${logs}`);
  }
  return sys;
}

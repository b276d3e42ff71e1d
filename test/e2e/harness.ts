/**
 * End-to-end harness: real processes of the built binary (dist/cairn, made by
 * `npm test`'s pretest build), certificates made by `cairn init`, real TLS on
 * loopback, real signals. Every process a test starts, close() stops.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { httpClient, type HttpFetch } from "../../src/platform/http.ts";
import { waitFor } from "../helpers/ports.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "cairn");
const DENO = join(ROOT, "node_modules", ".bin", "deno");

export function ensureBinary(): void {
  if (existsSync(BINARY)) return;
  const r = spawnSync(process.execPath, ["run", "build/build.ts"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error("building dist/cairn failed");
}

export interface ClusterFileNode {
  id: string;
  peer: string;
  api: string;
  role?: "voter" | "learner";
}

export interface ClusterFile {
  cluster: string;
  founders?: string[];
  nodes: ClusterFileNode[];
  tls?: { ca: string; cert: string; key: string };
  raft?: { heartbeatMs: number; electionMs: number };
}

interface Proc {
  readonly child: ChildProcess;
  readonly lines: string[];
  exited: Promise<number | null>;
}

export class E2ECluster {
  readonly procs = new Map<string, Proc>();
  readonly fetch: HttpFetch;
  private constructor(
    readonly dir: string,
    readonly file: string,
  ) {
    this.fetch = httpClient({ ca: readFileSync(join(dir, "tls", "ca.pem"), "utf8") });
  }

  /** `cairn init` in a fresh temp dir, then optional edits to the file (timings, ...). */
  static async init(n: number, edit?: (f: ClusterFile) => void): Promise<E2ECluster> {
    ensureBinary();
    const dir = mkdtempSync(join(tmpdir(), "cairn-e2e-"));
    const base = String(20_000 + Math.floor(Math.random() * 30_000));
    const r = spawnSync(BINARY, ["init", "--nodes", String(n), "--dir", dir, "--base-port", base], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`cairn init failed: ${r.stderr}`);
    const c = new E2ECluster(dir, join(dir, "cluster.json"));
    const f = c.readFile();
    f.raft = { heartbeatMs: 50, electionMs: 500 };
    edit?.(f);
    c.writeFile(f);
    return c;
  }

  readFile(): ClusterFile {
    return JSON.parse(readFileSync(this.file, "utf8")) as ClusterFile;
  }

  writeFile(f: ClusterFile): void {
    writeFileSync(this.file, JSON.stringify(f, null, 2));
  }

  api(id: string): string {
    const n = this.readFile().nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id} in the cluster file`);
    return n.api;
  }

  dataDir(id: string): string {
    return join(this.dir, "data", id);
  }

  /** Starts `cairn serve` for `id` (the compiled binary, or Deno running the sources). */
  start(id: string, opts: { runtime?: "bun" | "deno"; args?: string[] } = {}): Proc {
    if (this.procs.has(id)) throw new Error(`${id} is running already`);
    const args = ["serve", "--config", this.file, "--id", id, "--data", this.dataDir(id), ...(opts.args ?? [])];
    const child =
      opts.runtime === "deno"
        ? spawn(DENO, ["run", "-A", join(ROOT, "src", "main.ts"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
        : spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    const collect = (d: Buffer) => {
      for (const l of d.toString().split("\n")) if (l.trim()) lines.push(l);
      if (lines.length > 20_000) lines.splice(0, 10_000);
    };
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    const p = { child, lines, exited };
    this.procs.set(id, p);
    return p;
  }

  /** Sends a signal; for SIGKILL/SIGTERM waits for the exit. */
  async signal(id: string, sig: NodeJS.Signals): Promise<void> {
    const p = this.procs.get(id);
    if (!p) return;
    p.child.kill(sig);
    if (sig === "SIGKILL" || sig === "SIGTERM") {
      await p.exited;
      this.procs.delete(id);
    }
  }

  logs(id: string): string[] {
    return this.procs.get(id)?.lines ?? [];
  }

  async get(id: string, path: string, init?: RequestInit): Promise<Response> {
    return await this.fetch(`${this.api(id)}${path}`, init);
  }

  async json(id: string, path: string, init?: RequestInit): Promise<{ status: number; body: any }> {
    const r = await this.get(id, path, init);
    const text = await r.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: r.status, body };
  }

  async status(id: string): Promise<any> {
    return (await this.json(id, "/status")).body;
  }

  /** The leader as every live node agrees on it. */
  async leader(timeoutMs = 20_000): Promise<string> {
    return await waitFor(
      "an agreed leader",
      async () => {
        const ids = [...this.procs.keys()];
        const views = await Promise.all(ids.map((id) => this.status(id).catch(() => null)));
        const leaders = new Set(views.map((v) => v?.leader?.id ?? null));
        const l = [...leaders][0];
        return leaders.size === 1 && l && this.procs.has(l) ? l : undefined;
      },
      timeoutMs,
      50,
    );
  }

  async waitVoters(count: number, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `${count} voters`,
      async () => {
        const l = await this.leader(timeoutMs);
        const st = await this.status(l);
        return st.members.filter((m: { role: string }) => m.role === "voter").length === count;
      },
      timeoutMs,
      100,
    );
  }

  async post(id: string, data: unknown, opts: { tags?: string[]; key?: string } = {}): Promise<{ status: number; body: any }> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (opts.key) headers["idempotency-key"] = opts.key;
    return await this.json(id, "/changes", { method: "POST", headers, body: JSON.stringify({ data, tags: opts.tags ?? [] }) });
  }

  /** Every change on node `id`, in order, read from its local copy. */
  async feed(id: string): Promise<{ index: number; data: any }[]> {
    const out: { index: number; data: any }[] = [];
    let since = 0;
    for (;;) {
      const r = await this.json(id, `/changes?since=${since}&limit=1000&consistency=stale`);
      if (r.status !== 200) throw new Error(`feed of ${id}: ${r.status} ${JSON.stringify(r.body)}`);
      out.push(...r.body.changes);
      if (r.body.atEnd) return out;
      since = r.body.next;
    }
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.procs.entries()].map(async ([id, p]) => {
        p.child.kill("SIGCONT");
        p.child.kill("SIGKILL");
        await p.exited;
        this.procs.delete(id);
      }),
    );
    this.fetch.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

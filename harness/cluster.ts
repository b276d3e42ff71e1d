/**
 * End-to-end harness: real processes of the built binary (dist/cairn, made by
 * `npm test`'s pretest build), certificates made by `cairn init`, real TLS on
 * loopback, real signals. Every process a test starts, close() stops.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { httpClient, type HttpFetch } from "../src/platform/http.ts";
import { createNodeCert, type CertAndKey } from "../src/transport/certs.ts";
import type { PeerTls } from "../src/transport/context.ts";
import { freePortRun, waitFor } from "./ports.ts";

export const ROOT = join(import.meta.dir, "..");
export const BINARY = join(ROOT, "dist", "cairn");
const DENO = join(ROOT, "node_modules", ".bin", "deno");

export function ensureBinary(): void {
  if (existsSync(BINARY)) return;
  const r = spawnSync(process.execPath, ["run", "build/build.ts"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error("building dist/cairn failed");
}

export interface CairnRun {
  /** The exit code; -1 when a signal ended it (the timeout's SIGKILL among them). */
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/**
 * Runs the binary (`cairn ARGS...`) to its end without blocking the event loop,
 * so that clusters the test runs keep answering; SIGKILLed after `timeoutMs`
 * (default 30 s) so that a hung command fails its test instead of stalling it.
 */
export function runCairn(args: readonly string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CairnRun> {
  return new Promise((resolve) => {
    const p = spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"], env: o.env, cwd: o.cwd });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), o.timeoutMs ?? 30_000);
    // "close", not "exit": the output is complete only once both pipes have ended.
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out, err });
    });
  });
}

export interface ClusterFileNode {
  id: string;
  peer: string;
  api: string;
  role?: "voter" | "learner" | "witness";
}

export interface ClusterFile {
  cluster: string;
  founders?: string[];
  nodes: ClusterFileNode[];
  tls?: { ca: string; cert: string; key: string };
  raft?: { heartbeatMs: number; electionMs: number };
  allowShrink?: boolean;
}

interface Proc {
  readonly child: ChildProcess;
  readonly lines: string[];
  exited: Promise<number | null>;
  /** Set once the process has exited by itself or was stopped: its exit code (or signal). */
  exit?: string;
}

/** One parsed log line of a node (the JSON the Logger writes), or the raw text. */
export type LogLine = { msg?: string; level?: string; [k: string]: unknown };

export class E2ECluster {
  readonly procs = new Map<string, Proc>();
  /** The log lines of every run of each id, oldest run first (kept after the process exits). */
  private readonly runs = new Map<string, string[][]>();
  fetch: HttpFetch;
  private constructor(
    readonly dir: string,
    readonly file: string,
    /** The admin API token `cairn init` printed; this.fetch sends it unless a request has its own Authorization. */
    public token: string,
  ) {
    this.fetch = withToken(httpClient({ ca: readFileSync(join(dir, "ca", "ca.pem"), "utf8") }), () => this.token);
  }

  /** The environment for CLI runs against this cluster (CAIRN_TOKEN set to the admin token). */
  env(): NodeJS.ProcessEnv {
    return { ...process.env, CAIRN_TOKEN: this.token };
  }

  /** `cairn init` in a fresh temp dir, then optional edits to the file (timings, ...). */
  static async init(n: number, edit?: (f: ClusterFile) => void): Promise<E2ECluster> {
    ensureBinary();
    const dir = mkdtempSync(join(tmpdir(), "cairn-e2e-"));
    // Below the ephemeral range: a node started late must still find its ports free (see freePortRun).
    const base = String(await freePortRun(2 * n));
    const r = spawnSync(BINARY, ["init", "--nodes", String(n), "--dir", dir, "--base-port", base], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`cairn init failed: ${r.stderr}`);
    const c = new E2ECluster(dir, join(dir, "cluster.json"), initToken(r.stdout));
    const f = c.readFile();
    f.raft = { heartbeatMs: 50, electionMs: 500 };
    edit?.(f);
    c.writeFile(f);
    return c;
  }

  /** Trust another CA for this cluster's HTTPS API (after the test replaced the TLS files). */
  trustCa(caPem: string): void {
    this.fetch.close();
    this.fetch = withToken(httpClient({ ca: caPem }), () => this.token);
  }

  readFile(): ClusterFile {
    return JSON.parse(readFileSync(this.file, "utf8")) as ClusterFile;
  }

  writeFile(f: ClusterFile): void {
    writeFileSync(this.file, JSON.stringify(f, null, 2));
  }

  /** What an operator's tooling does: write a temporary file next to it, then rename it over. */
  writeFileAtomic(f: ClusterFile | string): void {
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, typeof f === "string" ? f : JSON.stringify(f, null, 2));
    renameSync(tmp, this.file);
  }

  /** Reads the file, lets `edit` change it, writes it back atomically; returns the new file. */
  editFile(edit: (f: ClusterFile) => void): ClusterFile {
    const f = this.readFile();
    edit(f);
    this.writeFileAtomic(f);
    return f;
  }

  api(id: string): string {
    let f: ClusterFile | null = null;
    try {
      f = this.readFile();
    } catch {
      // A test may have broken the file on purpose: use the address last read.
    }
    const n = f?.nodes?.find((x) => x.id === id && typeof x.api === "string");
    if (n) this.knownApis.set(id, n.api);
    const api = n?.api ?? this.knownApis.get(id);
    if (!api) throw new Error(`no node ${id} in the cluster file`);
    return api;
  }

  /** API URLs of nodes as last read from the file (nodes taken out of it, a broken file). */
  private readonly knownApis = new Map<string, string>();

  /** The peer address ("host:port") of `id` in the cluster file. */
  peer(id: string): string {
    const n = this.readFile().nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id} in the cluster file`);
    return n.peer;
  }

  /** The cluster CA that `cairn init` wrote (certificate and key, PEM). */
  ca(): CertAndKey {
    return { cert: readFileSync(join(this.dir, "ca", "ca.pem"), "utf8"), key: readFileSync(join(this.dir, "ca", "ca.key"), "utf8") };
  }

  /** Node `id`'s TLS material as `cairn init` (or `cairn tls`) wrote it: its bundle tls/<id>/. */
  nodeTls(id: string): PeerTls {
    const read = (f: string) => readFileSync(join(this.dir, "tls", id, f), "utf8");
    return { ca: read("ca.pem"), cert: read("node.pem"), key: read("node.key") };
  }

  /** A fresh certificate for `id` signed by this cluster's CA (valid, but for an id the file may not list). */
  async issueTls(id: string, hosts: string[] = ["127.0.0.1", "localhost"]): Promise<PeerTls> {
    const ca = this.ca();
    const node = await createNodeCert({ ca, nodeId: id, hosts, days: 1 });
    return { ca: ca.cert, cert: node.cert, key: node.key };
  }

  dataDir(id: string): string {
    return join(this.dir, "data", id);
  }

  /**
   * Starts `cairn serve` for `id` (the compiled binary, or Deno running the sources). `wrap` is a
   * command that execs the binary in place (e.g. `ip netns exec NS`: the child's pid is the node's).
   */
  start(id: string, opts: { runtime?: "bun" | "deno"; args?: string[]; config?: string; env?: Record<string, string>; wrap?: string[] } = {}): Proc {
    if (this.procs.has(id)) throw new Error(`${id} is running already`);
    const extra = opts.args ?? [];
    // serve finds `cairn init`'s tokens.json beside this.file; a test that points --config at
    // another file gets it passed explicitly.
    const other = (opts.config !== undefined || extra.includes("--config")) && !extra.includes("--tokens") && !extra.includes("--no-auth");
    const auth = other ? ["--tokens", join(this.dir, "tokens.json")] : [];
    const args = ["serve", "--config", opts.config ?? this.file, "--id", id, "--data", this.dataDir(id), ...auth, ...extra];
    const env = opts.env === undefined ? undefined : { ...process.env, ...opts.env };
    const child =
      opts.runtime === "deno"
        ? spawn(DENO, ["run", "-A", join(ROOT, "src", "main.ts"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env })
        : opts.wrap && opts.wrap.length > 0
          ? spawn(opts.wrap[0]!, [...opts.wrap.slice(1), BINARY, ...args], { stdio: ["ignore", "pipe", "pipe"], env })
          : spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"], env });
    const lines: string[] = [];
    const collect = (d: Buffer) => {
      for (const l of d.toString().split("\n")) if (l.trim()) lines.push(l);
      if (lines.length > 20_000) lines.splice(0, 10_000);
    };
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    const runs = this.runs.get(id) ?? [];
    runs.push(lines);
    this.runs.set(id, runs);
    const p: Proc = { child, lines, exited: Promise.resolve(null) };
    p.exited = new Promise<number | null>((res) =>
      child.once("exit", (code, sig) => {
        p.exit = code !== null ? `code ${code}` : `signal ${sig}`;
        res(code);
      }),
    );
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

  /** Every log line of `id`, from all its runs (earlier runs first), parsed. */
  allLogs(id: string): LogLine[] {
    const lines = (this.runs.get(id) ?? []).flat();
    return lines.map((l) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        return { msg: l };
      }
    });
  }

  /** The raw log lines of the latest run of `id` (also after it exited). */
  lastRunLogs(id: string): string[] {
    return this.runs.get(id)?.at(-1) ?? [];
  }

  /** Writes every run's log lines of every node to `dir`/ID.log (for a failed test: E2E_LOGS=dir). */
  dumpLogs(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const [id, runs] of this.runs) writeFileSync(join(dir, `${id}.log`), runs.map((r) => r.join("\n")).join("\n--- restart ---\n") + "\n");
  }

  /** Waits until a log line of `id` (any run) satisfies `pred`; returns it. */
  async waitForLog(id: string, what: string, pred: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    return await waitFor(`${id} to log ${what}`, () => this.allLogs(id).find(pred), timeoutMs, 25);
  }

  /** SIGTERM, then waits for the exit (SIGKILL after `timeoutMs`); returns the exit code. */
  async stop(id: string, timeoutMs = 10_000): Promise<number | null> {
    const p = this.procs.get(id);
    if (!p) return null;
    p.child.kill("SIGCONT");
    p.child.kill("SIGTERM");
    const timer = setTimeout(() => p.child.kill("SIGKILL"), timeoutMs);
    const code = await p.exited;
    clearTimeout(timer);
    this.procs.delete(id);
    return code;
  }

  /** The exit code of a process that is expected to exit by itself (it is forgotten then). */
  async exitOf(id: string, timeoutMs = 20_000): Promise<number | null> {
    const p = this.procs.get(id);
    if (!p) throw new Error(`${id} is not running`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await Promise.race([
      p.exited,
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${id} did not exit within ${timeoutMs} ms`)), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.procs.delete(id);
    return code;
  }
  /** Log lines of `id` (parsed JSON; non-JSON lines as {msg: line}) whose msg contains `text`. */
  logsMatching(id: string, text: string | RegExp): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const l of this.logs(id)) {
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(l) as Record<string, unknown>;
      } catch {
        o = { msg: l };
      }
      const msg = typeof o.msg === "string" ? o.msg : "";
      if (typeof text === "string" ? msg.includes(text) : text.test(msg)) out.push(o);
    }
    return out;
  }

  /** Waits until `id` has logged a line whose msg contains `text`; returns the first such line. */
  async waitLog(id: string, text: string | RegExp, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return await waitFor(`${id} to log ${String(text)}`, () => this.logsMatching(id, text)[0], timeoutMs, 20);
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
    return (await this.json(id, "/status", { signal: AbortSignal.timeout(2000) })).body;
  }

  /** The leader as every live node (or every node of `among`) agrees on it. */
  async leader(timeoutMs = 20_000, among?: string[]): Promise<string> {
    return await waitFor(
      "an agreed leader",
      async () => {
        const ids = among ?? [...this.procs.keys()];
        this.throwIfExited(ids);
        const views = await Promise.all(ids.map((id) => this.status(id).catch(() => null)));
        const leaders = new Set(views.map((v) => v?.leader?.id ?? null));
        const l = [...leaders][0];
        if (leaders.size === 1 && l && this.procs.has(l)) return l;
        // Thrown, not returned: waitFor keeps polling, and on timeout its message says who saw what last.
        const seen = ids.map((id, i) => `${id}: ${views[i] === null ? "no /status answer" : `leader ${views[i]?.leader?.id ?? "none"} (term ${views[i]?.term})`}`);
        throw new Error(`no agreement: ${seen.join(", ")}`);
      },
      timeoutMs,
      50,
    );
  }

  /** A node that exited never answers: say so (with its last error line) instead of only timing out. */
  throwIfExited(ids: string[]): void {
    for (const id of ids) {
      const p = this.procs.get(id);
      if (p?.exit === undefined) continue;
      const last = p.lines.filter((l) => /"level":"(error|warn)"|^cairn /.test(l)).at(-1) ?? p.lines.at(-1) ?? "(no output)";
      throw new Error(`${id} exited (${p.exit}); its last error line: ${last}`);
    }
  }

  async waitVoters(count: number, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `${count} voters`,
      async () => {
        const l = await this.leader(timeoutMs);
        const st = await this.status(l);
        return st.members.filter((m: { role: string }) => m.role === "voter").length === count && !st.joint;
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

/** The admin token in `cairn init`'s output. */
export function initToken(stdout: string): string {
  const m = /admin API token[^\n]*: (cairn_[A-Za-z0-9_-]{43})$/m.exec(stdout);
  if (!m) throw new Error(`cairn init printed no admin API token:\n${stdout}`);
  return m[1]!;
}

/** A fetch that sends Authorization: Bearer TOKEN unless the request has its own Authorization header. */
export function withToken(f: HttpFetch, token: () => string | null): HttpFetch {
  const g = (input: string | URL | Request, init?: RequestInit) => {
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    const t = token();
    if (t && !headers.has("authorization")) headers.set("authorization", `Bearer ${t}`);
    return f(input, { ...init, headers });
  };
  return Object.assign(g, { close: () => f.close() });
}

// ---------------------------------------------------------------- write load (membership and stepdown tests)

export interface Ack {
  readonly index: number;
  readonly data: { w: string; c: number; s: number };
  /** The node whose API answered. */
  readonly via: string;
  /** performance.now() when the answer arrived. */
  readonly at: number;
}

export interface WriterOptions {
  /** The nodes to write through, asked before each attempt and used in turn. */
  readonly via: () => string[];
  /** Concurrent clients, each a closed loop (one write in flight). Default 4. */
  readonly clients?: number;
  /** One HTTP attempt is abandoned after this long (a stopped process never answers). Default 3000. */
  readonly attemptTimeoutMs?: number;
  readonly name?: string;
}

/**
 * A steady write load: `clients` closed loops, each posting {w, c, s} with an
 * Idempotency-Key and retrying the SAME key (through the next node) until it
 * is acknowledged, so every write ends acknowledged exactly once or is still
 * unsettled when the writer stops.
 */
export class Writer {
  readonly acks: Ack[] = [];
  /** Failed attempts by status (or "error: ..." for a network failure). */
  readonly failures = new Map<string, number>();
  /** Writes whose outcome is unknown when stop() returned (JSON of their data). */
  readonly unsettled = new Set<string>();
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private turn = 0;

  constructor(
    private readonly c: E2ECluster,
    private readonly opts: WriterOptions,
  ) {}

  start(): this {
    const n = this.opts.clients ?? 4;
    for (let i = 0; i < n; i++) this.loops.push(this.loop(i));
    return this;
  }

  /** Stops issuing new writes; lets each write in flight settle for up to `settleMs`. */
  async stop(settleMs = 15_000): Promise<void> {
    this.stopping = true;
    const deadline = performance.now() + settleMs;
    this.settleBy = deadline;
    await Promise.all(this.loops);
  }

  private settleBy = Infinity;

  private async loop(client: number): Promise<void> {
    const name = this.opts.name ?? "w";
    for (let s = 0; !this.stopping; s++) {
      const data = { w: name, c: client, s };
      const key = `${name}-${client}-${s}`;
      if (!(await this.writeUntilAcked(data, key))) this.unsettled.add(JSON.stringify(data));
    }
  }

  private async writeUntilAcked(data: Ack["data"], key: string): Promise<boolean> {
    for (;;) {
      if (performance.now() > this.settleBy) return false;
      const ids = this.opts.via();
      const id = ids[this.turn++ % Math.max(1, ids.length)];
      if (id === undefined) {
        await sleep(20); // no node to write through yet: retry pacing
        continue;
      }
      const outcome = await this.attempt(id, data, key);
      if (outcome === null) return true;
      this.failures.set(outcome, (this.failures.get(outcome) ?? 0) + 1);
      await sleep(5); // retry pacing after a refused attempt
    }
  }

  /** One POST; null when acknowledged, else why not. */
  private async attempt(id: string, data: Ack["data"], key: string): Promise<string | null> {
    try {
      const r = await this.c.json(id, "/changes", {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ data, tags: ["load"] }),
        signal: AbortSignal.timeout(this.opts.attemptTimeoutMs ?? 3000),
      });
      if (r.status !== 200 && r.status !== 201) return `${r.status} ${r.body?.error?.code ?? ""}`.trim();
      this.acks.push({ index: r.body.index, data, via: id, at: performance.now() });
      return null;
    } catch (e) {
      return `error: ${(e as Error).name}: ${(e as Error).message}`;
    }
  }

  count(): number {
    return this.acks.length;
  }

  /** Resolves once `n` more writes than now have been acknowledged. */
  async more(n: number, timeoutMs = 20_000): Promise<void> {
    const target = this.acks.length + n;
    await waitFor(`${n} more acknowledged writes (have ${this.acks.length})`, () => this.acks.length >= target, timeoutMs, 10);
  }

  /**
   * The longest time without an acknowledged write, over the gaps between
   * consecutive acknowledgements that overlap [from, to] (performance.now() times).
   */
  maxGapMs(from: number, to: number): number {
    const times = this.acks.map((a) => a.at).sort((a, b) => a - b);
    let worst = 0;
    for (let i = 1; i < times.length; i++) {
      const a = times[i - 1]!;
      const b = times[i]!;
      if (b >= from && a <= to) worst = Math.max(worst, b - a);
    }
    return worst;
  }

  summary(): string {
    const f = [...this.failures].map(([k, v]) => `${k} x${v}`).join(", ");
    return `${this.acks.length} acknowledged, ${this.unsettled.size} unsettled${f ? `; failed attempts: ${f}` : ""}`;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let probeNo = 0;

/**
 * Posts one probe change through `id` until it is acknowledged; returns when
 * (performance.now()). Retries carry the same Idempotency-Key, so the probe is
 * in the feed at most once; with `writer`, it is registered with that writer's
 * unsettled writes so that expectFeedsAgree accepts it there.
 */
export async function firstWriteVia(c: E2ECluster, id: string, o: { timeoutMs: number; writer?: Writer }): Promise<number> {
  const key = `probe-${id}-${++probeNo}`;
  o.writer?.unsettled.add(JSON.stringify({ probe: key }));
  return await waitFor(
    `a write acknowledged through ${id}`,
    async () => {
      const r = await c.json(id, "/changes", {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ data: { probe: key }, tags: [] }),
        signal: AbortSignal.timeout(500),
      });
      return r.status === 200 || r.status === 201 ? performance.now() : undefined;
    },
    o.timeoutMs,
    20,
  );
}

/**
 * Every node of `ids` ends with the same feed (same indexes, same data, same
 * order); every acknowledged write is in it exactly once at the index it was
 * acknowledged with; every other load write is one whose outcome was unknown.
 */
export async function expectFeedsAgree(c: E2ECluster, ids: string[], writers: Writer | Writer[], timeoutMs = 30_000): Promise<{ length: number }> {
  const ws = Array.isArray(writers) ? writers : [writers];
  const acks = ws.flatMap((w) => w.acks);
  const unsettled = new Set(ws.flatMap((w) => [...w.unsettled]));
  // Wait until every node has applied the same last change (the load has stopped).
  await waitFor(
    `the feeds of ${ids.join(", ")} to agree`,
    async () => {
      const lasts = await Promise.all(ids.map(async (id) => (await c.status(id)).feed.last as number));
      return lasts.every((l) => l === lasts[0]) && lasts[0]! >= acks.length;
    },
    timeoutMs,
    100,
  );
  const feeds = await Promise.all(ids.map((id) => c.feed(id)));
  const first = feeds[0]!;
  const byIndex = new Map(first.map((ch) => [ch.index, JSON.stringify(ch.data)]));
  const problems: string[] = [];
  feeds.forEach((f, i) => {
    if (JSON.stringify(f.map((ch) => [ch.index, ch.data])) !== JSON.stringify(first.map((ch) => [ch.index, ch.data]))) {
      problems.push(`${ids[i]}'s feed differs from ${ids[0]}'s (${f.length} vs ${first.length} changes)`);
    }
  });
  const seen = new Map<string, number>();
  for (const ch of first) seen.set(JSON.stringify(ch.data), (seen.get(JSON.stringify(ch.data)) ?? 0) + 1);
  for (const [d, n] of seen) if (n > 1) problems.push(`${d} appears ${n} times`);
  const acked = new Set<string>();
  for (const a of acks) {
    const d = JSON.stringify(a.data);
    acked.add(d);
    if (byIndex.get(a.index) !== d) problems.push(`acknowledged ${d} at index ${a.index} (via ${a.via}) but the feed has ${byIndex.get(a.index) ?? "nothing"} there`);
  }
  for (const d of seen.keys()) if (!acked.has(d) && !unsettled.has(d)) problems.push(`${d} is in the feed but was never written or was acknowledged elsewhere`);
  if (problems.length > 0) throw new Error(`feeds disagree:\n  ${problems.slice(0, 20).join("\n  ")}`);
  return { length: first.length };
}

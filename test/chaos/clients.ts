/**
 * Chaos clients: closed loops doing PUT, GET, compare-and-set, DELETE and
 * POST /changes against any node, each operation recorded with its call and
 * return times (performance.now()) and outcome. An answer that says the write
 * did not happen (4xx) is "failed"; no answer, a timeout or a 5xx after the
 * request was sent is "unknown" (it may still take effect, at any time).
 *
 * A refused connection (ECONNREFUSED) is "failed" only while the node was
 * down: Bun's fetch sends a request again on a new connection when its
 * keep-alive connection closes before the answer, so a request the node had
 * received (and forwarded to the leader) when it was killed ends in
 * ECONNREFUSED too. settleRefused() makes those "unknown" once the run knows
 * when each node died.
 */
import { SeededRng } from "../../src/raft/rng.ts";
import type { E2ECluster } from "../e2e/harness.ts";
import type { ChangeAttempt, Outcome, RegisterOp } from "./checker.ts";

export interface ClientOptions {
  readonly cluster: E2ECluster;
  /** Nodes to send to (any of them: a partitioned or stopped one just times out). */
  readonly nodes: () => string[];
  readonly clients: number;
  readonly keys: readonly string[];
  readonly seed: number;
  /** Per request; past it the outcome is unknown. */
  readonly timeoutMs: number;
  /** A unique mark of this run in change data. */
  readonly run: string;
}

/** The status recorded for a connection refused before the request was sent. */
const REFUSED = -1;

export interface WriteAck {
  readonly atMs: number;
  readonly node: string;
}

export class Clients {
  readonly ops: (RegisterOp & { node: string })[] = [];
  readonly changes: (ChangeAttempt & { callMs: number; returnMs: number })[] = [];
  /** Return times of every successful write (kv or change), for the availability figures. */
  readonly writes: WriteAck[] = [];
  private stopping = false;
  /** Refused connections since the loop last looked (a killed node refuses at once: do not spin). */
  private refused = 0;
  private loops: Promise<void>[] = [];
  /** Where the writes answered only by a refused connection are recorded (see settleRefused). */
  private readonly refusedOps: number[] = [];
  private readonly refusedChanges: number[] = [];

  constructor(private readonly o: ClientOptions) {}

  start(): void {
    for (let c = 0; c < this.o.clients; c++) this.loops.push(this.loop(c));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  private async loop(client: number): Promise<void> {
    const rng = new SeededRng(this.o.seed * 1000 + client);
    const seen = new Map<string, number>(); // key -> last version this client saw
    let retry: { id: string } | null = null;
    for (let seq = 0; !this.stopping; seq++) {
      const nodes = this.o.nodes();
      const node = rng.pick(nodes);
      const key = rng.pick(this.o.keys);
      const x = rng.next();
      if (retry) {
        // The same change again through another node, with the same Idempotency-Key.
        const outcome = await this.change(client, node, retry.id);
        retry = null;
        if (outcome === "unknown") await sleep(20);
      } else if (x < 0.3) {
        const id = `${this.o.run}-c${client}-${seq}`;
        if ((await this.change(client, node, id)) === "unknown") retry = { id };
      } else if (x < 0.55) await this.get(client, node, key, seen);
      else if (x < 0.75) await this.put(client, node, key, `c${client}-${seq}`, undefined, seen);
      else if (x < 0.95) await this.put(client, node, key, `c${client}-${seq}`, seen.get(key) ?? 0, seen);
      else await this.del(client, node, key, seen);
      if (this.refused > 0) {
        this.refused = 0;
        await sleep(50);
      }
    }
  }

  /**
   * A write refused while its node died (diedDuring its call..return) may have
   * been received before the death: its outcome becomes unknown. Call after
   * stop(); returns how many changed.
   */
  settleRefused(diedDuring: (node: string, callMs: number, returnMs: number) => boolean): number {
    let n = 0;
    for (const i of this.refusedOps) {
      const op = this.ops[i]!;
      if (op.outcome !== "failed" || !diedDuring(op.node, op.callMs, op.returnMs)) continue;
      this.ops[i] = { ...op, outcome: "unknown" };
      n++;
    }
    for (const i of this.refusedChanges) {
      const ch = this.changes[i]!;
      if (ch.outcome !== "failed" || !diedDuring(ch.node, ch.callMs, ch.returnMs)) continue;
      this.changes[i] = { ...ch, outcome: "unknown" };
      n++;
    }
    this.refusedOps.length = 0;
    this.refusedChanges.length = 0;
    return n;
  }

  private async request(node: string, path: string, init: RequestInit): Promise<{ status: number; text: string; headers: Headers } | null> {
    try {
      const r = await this.o.cluster.get(node, path, { ...init, signal: AbortSignal.timeout(this.o.timeoutMs) });
      return { status: r.status, text: await r.text(), headers: r.headers };
    } catch (e) {
      // A refused connection never carried the request: the operation certainly did not happen.
      if ((e as { code?: string }).code === "ECONNREFUSED") return { status: REFUSED, text: "", headers: new Headers() };
      return null;
    }
  }

  private outcomeOf(r: { status: number } | null): Outcome {
    if (r?.status === REFUSED) this.refused++;
    if (r?.status === REFUSED) return "failed";
    if (r === null || r.status >= 500) return "unknown";
    return r.status >= 200 && r.status < 300 ? "ok" : "failed";
  }

  private async change(client: number, node: string, id: string): Promise<Outcome> {
    const callMs = performance.now();
    const r = await this.request(node, "/changes", {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": id },
      body: JSON.stringify({ data: { chaos: this.o.run, id }, tags: ["chaos"] }),
    });
    const returnMs = performance.now();
    const outcome = this.outcomeOf(r);
    const index = outcome === "ok" ? (JSON.parse(r!.text) as { index: number }).index : undefined;
    if (r?.status === REFUSED) this.refusedChanges.push(this.changes.length);
    this.changes.push({ id, outcome, node, callMs, returnMs, ...(index === undefined ? {} : { index }) });
    if (outcome === "ok") this.writes.push({ atMs: returnMs, node });
    void client;
    return outcome;
  }

  private async get(client: number, node: string, key: string, seen: Map<string, number>): Promise<void> {
    const callMs = performance.now();
    const r = await this.request(node, `/kv/${key}`, { method: "GET" });
    const returnMs = performance.now();
    if (r?.status === 200) {
      const version = Number(r.headers.get("x-cairn-version"));
      seen.set(key, version);
      this.ops.push({ f: "get", key, outcome: "ok", value: r.text, version, callMs, returnMs, client, node });
    } else if (r?.status === 404) {
      seen.set(key, 0);
      this.ops.push({ f: "get", key, outcome: "ok", value: null, version: 0, callMs, returnMs, client, node });
    } else {
      this.ops.push({ f: "get", key, outcome: this.outcomeOf(r) === "unknown" ? "unknown" : "failed", callMs, returnMs, client, node });
    }
  }

  private async put(client: number, node: string, key: string, value: string, ifMatch: number | undefined, seen: Map<string, number>): Promise<void> {
    const callMs = performance.now();
    const headers: Record<string, string> = { "content-type": "text/plain" };
    if (ifMatch !== undefined) headers["if-match"] = `"${ifMatch}"`;
    const r = await this.request(node, `/kv/${key}`, { method: "PUT", headers, body: value });
    const returnMs = performance.now();
    const outcome = this.outcomeOf(r);
    const body = r && r.text.startsWith("{") ? (JSON.parse(r.text) as { version?: number }) : {};
    const base = { f: "put" as const, key, value, outcome, callMs, returnMs, client, node, ...(ifMatch === undefined ? {} : { ifMatch }) };
    if (outcome === "ok") {
      seen.set(key, body.version!);
      this.writes.push({ atMs: returnMs, node });
      this.ops.push({ ...base, version: body.version! });
    } else if (r?.status === 412) {
      seen.set(key, body.version!);
      this.ops.push({ ...base, currentVersion: body.version! });
    } else {
      if (r?.status === REFUSED) this.refusedOps.push(this.ops.length);
      this.ops.push(base);
    }
  }

  private async del(client: number, node: string, key: string, seen: Map<string, number>): Promise<void> {
    const callMs = performance.now();
    const r = await this.request(node, `/kv/${key}`, { method: "DELETE" });
    const returnMs = performance.now();
    const outcome = this.outcomeOf(r);
    const body = r && r.text.startsWith("{") ? (JSON.parse(r.text) as { version?: number }) : {};
    const base = { f: "del" as const, key, outcome, callMs, returnMs, client, node };
    if (outcome === "ok") {
      seen.set(key, 0);
      this.writes.push({ atMs: returnMs, node });
      this.ops.push({ ...base, version: body.version! });
    } else if (r?.status === 404) this.ops.push({ ...base, notFound: true });
    else {
      if (r?.status === REFUSED) this.refusedOps.push(this.ops.length);
      this.ops.push(base);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

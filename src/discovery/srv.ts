/**
 * DNS SRV discovery: the cluster file's `"discovery": {"srv", "intervalMs"?,
 * "server"?}` instead of `nodes`.
 *
 * The rule (README "DNS SRV discovery"):
 *  - the SRV record NAME lists one target per node: `priority weight port target`;
 *    the node's peer address is `ADDRESS:port`, where ADDRESS is the target's
 *    A record (else AAAA) from the same DNS server, or the target name itself
 *    when it has neither (then dialled through the system resolver);
 *  - TXT at the target name gives the node's id and API URL as
 *    space-separated `key=value` pairs (in one or several strings or records):
 *    `id=n1 api=https://10.0.0.1:7401` and optionally `role=learner`;
 *  - priority and weight are ignored (every target is a member).
 * The nodes found go through the same checks as a file's (ids, addresses,
 * duplicates) and then the same convergence (plan.ts, node/membership.ts),
 * including the hold on an edit that removes a majority of the voters.
 * A lookup that fails, times out, finds no record, finds zero targets, a
 * target without a usable TXT, or nodes the checks refuse, is never converged
 * to: the last good set stays, a warning is logged once per distinct problem
 * and the problem is shown in /status until a good answer comes back.
 *
 * node:dns `Resolver` with `setServers(["host:port"])` works the same under
 * Bun and Deno (checked by test/discovery/srv.test.ts under both).
 */
import { Resolver } from "node:dns/promises";
import type { Logger } from "../util/log.ts";
import { type ClusterConfig, type DiscoveryConfig, resolveClusterFile } from "./load.ts";
import { NODES_MAX } from "./schema.ts";
import { validateClusterFile } from "./validate.ts";

/** One DNS lookup (SRV, then the targets' TXT and A/AAAA) must finish within this. */
export const SRV_LOOKUP_TIMEOUT_MS = 5000;

export interface FoundNode {
  readonly id: string;
  readonly peer: string;
  readonly api: string;
  readonly role?: "voter" | "learner" | "witness";
}

export type SrvAnswer = { ok: true; nodes: FoundNode[] } | { ok: false; reason: string };

function resolverFor(d: DiscoveryConfig, timeoutMs: number): Resolver {
  const r = new Resolver({ timeout: Math.max(100, Math.floor(timeoutMs / 2)), tries: 2 });
  if (d.server !== null) r.setServers([d.server]);
  return r;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/**
 * The `key=value` pairs of every TXT string at a target, read together: Bun's
 * resolveTxt returns each string of a record as a record of its own (Deno keeps
 * them together), so record boundaries cannot carry meaning. A key given twice
 * with different values is refused (which one is meant is a guess).
 */
export function parseTxt(records: readonly (readonly string[])[]): { ok: true; id?: string; api?: string; role?: string } | { ok: false; reason: string } {
  const kv = new Map<string, string>();
  for (const part of records.flat().join(" ").split(/\s+/)) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const [k, v] = [part.slice(0, eq).toLowerCase(), part.slice(eq + 1)];
    if (kv.has(k) && kv.get(k) !== v) return { ok: false, reason: `${k} is given twice (${kv.get(k)} and ${v})` };
    kv.set(k, v);
  }
  return { ok: true, id: kv.get("id"), api: kv.get("api"), role: kv.get("role") };
}

async function addressOf(r: Resolver, target: string): Promise<string> {
  const v4 = await r.resolve4(target).catch(() => [] as string[]);
  if (v4[0] !== undefined) return v4[0];
  const v6 = await r.resolve6(target).catch(() => [] as string[]);
  return v6[0] !== undefined ? `[${v6[0]}]` : target;
}

const errText = (e: unknown) => ((e as { code?: string }).code ?? (e as Error).message ?? String(e));

/** Looks the record up once. */
export async function lookupSrv(d: DiscoveryConfig, timeoutMs = SRV_LOOKUP_TIMEOUT_MS): Promise<SrvAnswer> {
  const r = resolverFor(d, timeoutMs);
  const via = d.server === null ? "the system's DNS servers" : d.server;
  try {
    return await withTimeout(lookupWith(r, d, via), timeoutMs, `the SRV lookup of ${d.srv}`);
  } catch (e) {
    return { ok: false, reason: `the SRV lookup of ${d.srv} (via ${via}) failed: ${errText(e)}` };
  } finally {
    r.cancel();
  }
}

async function lookupWith(r: Resolver, d: DiscoveryConfig, via: string): Promise<SrvAnswer> {
  let srv: { name: string; port: number }[];
  try {
    srv = await r.resolveSrv(d.srv);
  } catch (e) {
    return { ok: false, reason: `the SRV record ${d.srv} (via ${via}) could not be read: ${errText(e)}` };
  }
  if (srv.length === 0) return { ok: false, reason: `the SRV record ${d.srv} (via ${via}) has no targets` };
  if (srv.length > NODES_MAX) return { ok: false, reason: `the SRV record ${d.srv} has ${srv.length} targets, over ${NODES_MAX}` };
  // Targets are looked up in parallel (at most NODES_MAX of them): one slow name does not add up.
  const found = await Promise.all(srv.map((s) => lookupTarget(r, s)));
  const bad = found.find((f): f is { reason: string } => "reason" in f);
  if (bad) return { ok: false, reason: bad.reason };
  const nodes = found as FoundNode[];
  nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { ok: true, nodes };
}

async function lookupTarget(r: Resolver, s: { name: string; port: number }): Promise<FoundNode | { reason: string }> {
  const target = s.name.replace(/\.$/, "");
  const txt = await r.resolveTxt(target).catch((e: unknown) => e);
  if (!Array.isArray(txt)) return { reason: `the TXT record of SRV target ${target} could not be read: ${errText(txt)}` };
  const meta = parseTxt(txt as string[][]);
  if (!meta.ok) return { reason: `the TXT record of SRV target ${target} is ambiguous: ${meta.reason}` };
  if (meta.id === undefined || meta.api === undefined) {
    return { reason: `the TXT record of SRV target ${target} has no "id=... api=..." (e.g. "id=n1 api=https://10.0.0.1:7401")` };
  }
  const role = meta.role === "learner" || meta.role === "voter" || meta.role === "witness" ? meta.role : undefined;
  if (meta.role !== undefined && role === undefined) return { reason: `the TXT record of ${target} has role=${meta.role}; use voter, learner or witness` };
  return { id: meta.id, peer: `${await addressOf(r, target)}:${s.port}`, api: meta.api, ...(role ? { role } : {}) };
}

/**
 * The file's config with `nodes` replaced by those found in DNS, checked like
 * a file's nodes. `config` is the file's resolved config (its TLS paths are
 * absolute already, so resolving them again leaves them as they are).
 */
export function withFoundNodes(config: ClusterConfig, nodes: readonly FoundNode[]): { ok: true; config: ClusterConfig } | { ok: false; reason: string } {
  const raw = {
    cluster: config.cluster,
    nodes,
    ...(config.tls ? { tls: config.tls } : {}),
    raft: config.raft,
    ...(config.founders ? { founders: config.founders } : {}),
    allowShrink: config.allowShrink,
    ...(config.revoked ? { revoked: config.revoked } : {}),
    ...(config.validators ? { validators: config.validators } : {}),
  };
  const v = validateClusterFile(raw);
  if (!v.ok) return { ok: false, reason: `the nodes in the SRV record ${config.discovery?.srv} are refused: ${v.problems.join("; ")}` };
  return { ok: true, config: { ...resolveClusterFile(v.file, config.path), discovery: config.discovery ?? null } };
}

export interface SrvDiscoveryOptions {
  readonly log: Logger;
  /** Each config to use: the file's as is without discovery, else the file's with the nodes found. */
  readonly onConfig: (config: ClusterConfig) => void;
  /** Why the record is being ignored (the last good set stays), or null once it is good again. */
  readonly onProblem?: (problem: string | null) => void;
  /** The same vet as the file's (cluster name, TLS files...): a vetoed set is not used. */
  readonly vet?: (next: ClusterConfig) => readonly string[];
  /** Replaces the DNS lookup (tests of the poller only). */
  readonly lookup?: (d: DiscoveryConfig) => Promise<SrvAnswer>;
}

/** Polls the SRV record named by the cluster file in force and emits configs built from it. */
export class SrvDiscovery {
  private file: ClusterConfig | null = null;
  /** The last good set of nodes, or null before the first good answer. */
  private found: readonly FoundNode[] | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private problem: string | null = null;
  private lastEmitted = "";
  private closed = false;
  private running: Promise<void> | null = null;
  private readonly lookup: (d: DiscoveryConfig) => Promise<SrvAnswer>;

  constructor(private readonly o: SrvDiscoveryOptions) {
    this.lookup = o.lookup ?? ((d) => lookupSrv(d));
  }

  /**
   * At start: waits for the first good answer (retrying every intervalMs, at most 5 s apart)
   * and returns the config with its nodes; null once `stop` resolves first.
   */
  async first(file: ClusterConfig, stop: Promise<unknown>): Promise<ClusterConfig | null> {
    this.file = file;
    const d = file.discovery;
    if (!d) return file;
    let stopped = false;
    void stop.then(() => (stopped = true));
    while (!stopped && !this.closed) {
      await this.pollOnce();
      if (this.found !== null) return this.merged()!;
      let t: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([stop, new Promise((r) => (t = setTimeout(r, Math.min(d.intervalMs, 5000))))]);
      clearTimeout(t);
    }
    return null;
  }

  /** After start-up: `current` is in force already (from `first`, or the file itself); poll on the interval. */
  start(file: ClusterConfig, current: ClusterConfig): void {
    this.file = file;
    this.lastEmitted = JSON.stringify(current);
    const d = file.discovery;
    if (d && !this.closed) this.timer = setTimeout(() => void this.poll(), d.intervalMs);
  }

  /** The file in force changed: follow it. */
  setFile(file: ClusterConfig): void {
    const before = this.file?.discovery;
    this.file = file;
    if (!file.discovery) {
      this.stopTimer();
      this.found = null;
      this.setProblem(null);
      return this.emit(file);
    }
    const m = this.merged();
    if (m) this.emit(m);
    if (!before || JSON.stringify(before) !== JSON.stringify(file.discovery) || this.timer === null) {
      this.stopTimer();
      void this.poll();
    }
  }

  /** Looks the record up now (and then on the interval again). */
  async poll(): Promise<void> {
    if (this.closed) return;
    this.stopTimer();
    try {
      await this.pollOnce();
    } finally {
      const d = this.file?.discovery;
      if (d && !this.closed && this.timer === null) this.timer = setTimeout(() => void this.poll(), d.intervalMs);
    }
  }

  close(): void {
    this.closed = true;
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private pollOnce(): Promise<void> {
    this.running ??= this.lookupAndApply().finally(() => (this.running = null));
    return this.running;
  }

  private async lookupAndApply(): Promise<void> {
    const file = this.file;
    const d = file?.discovery;
    if (!file || !d) return;
    const a = await this.lookup(d);
    if (this.closed || this.file !== file) return;
    if (!a.ok) return this.setProblem(a.reason);
    const m = withFoundNodes(file, a.nodes);
    if (!m.ok) return this.setProblem(m.reason);
    const vetoes = this.o.vet?.(m.config) ?? [];
    if (vetoes.length > 0) return this.setProblem(`the nodes in the SRV record ${d.srv} are refused: ${vetoes.join("; ")}`);
    this.setProblem(null);
    this.found = a.nodes;
    this.emit(m.config);
  }

  private merged(): ClusterConfig | null {
    if (!this.file || this.found === null) return null;
    const m = withFoundNodes(this.file, this.found);
    return m.ok ? m.config : null;
  }

  private emit(c: ClusterConfig): void {
    const key = JSON.stringify(c);
    if (key === this.lastEmitted) return;
    const first = this.lastEmitted === "";
    this.lastEmitted = key;
    if (!first || this.file?.discovery) this.o.log.info("cluster nodes from DNS", { srv: c.discovery?.srv ?? null, nodes: c.nodes.map((n) => `${n.id}@${n.peer}`) });
    try {
      this.o.onConfig(c);
    } catch (e) {
      this.o.log.error("the cluster config change handler failed", { err: e });
    }
  }

  private setProblem(p: string | null): void {
    if (p === this.problem) return;
    this.problem = p;
    const kept = this.found === null ? "no good answer has been seen yet" : "the last good set of nodes stays in force";
    if (p !== null) this.o.log.warn(`${p}; ignored, ${kept}`);
    else this.o.log.info("the SRV record is good again");
    try {
      this.o.onProblem?.(p === null ? null : `${p}; ignored, ${kept}`);
    } catch (e) {
      this.o.log.error("the SRV problem handler failed", { err: e });
    }
  }
}

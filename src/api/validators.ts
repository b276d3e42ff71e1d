/**
 * Pre-commit validators: HTTP services the leader asks before it proposes a
 * write (the cluster file's "validators"). Outside the Raft loop: the node
 * awaits `check()` in the write's own request, before raft.propose, so a slow
 * validator delays only the writes it validates; every other write goes on.
 *
 * Which writes: a validator matches a write when one of its tags is one of
 * the write's tags. POST /changes carries the union of its items' tags; the
 * key-value writes (PUT, DELETE, txn) carry the tag "kv"; "*" matches every
 * write. All matching validators are called in parallel; any rejection wins.
 * A forwarded write is checked once, at the leader (the node calls the hook
 * only where it proposes).
 *
 * The contract (README "Pre-commit validators"): POST <url> with
 * `content-type: application/json` and the body
 *   {"id": "<random id of this call>", "op": "changes"|"put"|"del"|"txn",
 *    "tags": [...], "cluster": "...", "node": "<leader id>", ...the write}
 * where the write is `"items": [{"data", "tags"}]` for changes,
 * `"key", "value" (base64), "contentType"` for put, `"key"` for del, and
 * `"success"/"failure"` op lists (values base64) for txn. The validator
 * answers 200 with {"ok": true} or {"ok": false, "reason": "..."}.
 * Anything else (another status, a body that is not that JSON, a body over
 * ANSWER_BYTES_MAX, a timeout, a refused connection, a write whose JSON is
 * over the validator's bodyBytesMax) is a failure: the write is rejected
 * with the failure as reason, or let through when "onError": "accept".
 * Over concurrencyMax calls in flight to one validator: 503 + Retry-After.
 */
import { Buffer } from "node:buffer";
import { NodeError } from "../node/errors.ts";
import type { ValidatorConfig } from "../discovery/load.ts";
import { type Command, decodeCommand, type TxnOp } from "../statemachine/commands.ts";
import type { Logger } from "../util/log.ts";

/** A validator's answer is read up to this many bytes; a longer one is a failure. */
export const ANSWER_BYTES_MAX = 64 * 1024;
/** A reason is cut to this many characters in the client's error. */
export const REASON_CHARS_MAX = 1000;
/** The tag every key-value write carries for validators. */
export const KV_TAG = "kv";

/** A validator said no, or failed with "onError": "reject": the client gets 422. */
export class ValidationRejectedError extends NodeError {
  override name = "ValidationRejectedError";
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super("rejected", `validator ${url} rejected the write: ${reason}`);
  }
}

/** Too many calls in flight to one validator: the client retries later. */
export class ValidatorBusyError extends NodeError {
  override name = "ValidatorBusyError";
  constructor(url: string, max: number) {
    super("validator_busy", `validator ${url} already has ${max} calls in flight (its concurrencyMax); retry shortly`);
  }
}

type Verdict = { ok: true } | { ok: false; reason: string; failed: boolean };

/** The tags a write carries for matching. */
export function writeTags(cmd: Command): string[] {
  if (cmd.op !== "changes") return [KV_TAG];
  const tags = new Set<string>();
  for (const it of cmd.items) for (const t of it.tags) tags.add(t);
  return [...tags];
}

const b64 = (v: Uint8Array) => Buffer.from(v).toString("base64");
const txnOps = (ops: readonly TxnOp[]) => ops.map((o) => (o.op === "put" ? { op: o.op, key: o.key, value: b64(o.value), contentType: o.contentType } : { op: o.op, key: o.key }));

/** The write as the validator sees it (see the contract above). */
export function writeBody(cmd: Command): Record<string, unknown> {
  switch (cmd.op) {
    case "changes":
      return { items: cmd.items.map((it) => ({ data: it.data, tags: it.tags })) };
    case "put":
      return { key: cmd.key, value: b64(cmd.value), contentType: cmd.contentType };
    case "del":
      return { key: cmd.key };
    case "txn":
      return { success: txnOps(cmd.success), failure: txnOps(cmd.failure) };
  }
}

export interface ValidatorsOptions {
  readonly validators: readonly ValidatorConfig[];
  readonly cluster: string;
  readonly nodeId: string;
  readonly log: Logger;
}

export class Validators {
  private list: readonly ValidatorConfig[];
  /** Calls in flight per URL; kept across reloads so a reload never lifts the limit. */
  private readonly inFlight = new Map<string, number>();
  private readonly log: Logger;

  constructor(private readonly o: ValidatorsOptions) {
    this.list = o.validators;
    this.log = o.log.with({ component: "validators" });
  }

  /** The file changed: the new list applies to writes checked from now on. */
  update(list: readonly ValidatorConfig[]): void {
    this.list = list;
  }

  /**
   * The node's hook: null when no validator matches (nothing to wait for),
   * else a promise that rejects with ValidationRejectedError / ValidatorBusyError.
   * Bytes that are not a cairn command (an embedder's proposeData) are not validated.
   */
  check(bytes: Uint8Array): Promise<void> | null {
    if (this.list.length === 0) return null;
    let cmd: Command;
    try {
      cmd = decodeCommand(bytes);
    } catch {
      return null;
    }
    const tags = writeTags(cmd);
    const matching = this.list.filter((v) => v.tags.some((t) => t === "*" || tags.includes(t)));
    return matching.length === 0 ? null : this.run(matching, cmd, tags);
  }

  private async run(matching: readonly ValidatorConfig[], cmd: Command, tags: string[]): Promise<void> {
    const body = JSON.stringify({ id: crypto.randomUUID(), op: cmd.op, tags, cluster: this.o.cluster, node: this.o.nodeId, ...writeBody(cmd) });
    const bodyBytes = Buffer.byteLength(body);
    const slots: (() => void)[] = [];
    try {
      for (const v of matching) slots.push(this.take(v));
      const verdicts = await Promise.all(matching.map((v) => this.call(v, body, bodyBytes)));
      verdicts.forEach((verdict, i) => {
        const v = matching[i]!;
        if (verdict.ok) return;
        if (verdict.failed && v.onError === "accept") {
          this.log.warn(`validator ${v.url} failed (${verdict.reason}); the write is let through ("onError": "accept")`);
          return;
        }
        throw new ValidationRejectedError(v.url, verdict.reason);
      });
    } finally {
      for (const release of slots) release();
    }
  }

  /** Takes a slot of v's concurrency, or throws ValidatorBusyError (taking none). */
  private take(v: ValidatorConfig): () => void {
    const n = this.inFlight.get(v.url) ?? 0;
    if (n >= v.concurrencyMax) throw new ValidatorBusyError(v.url, v.concurrencyMax);
    this.inFlight.set(v.url, n + 1);
    return () => {
      const left = (this.inFlight.get(v.url) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(v.url);
      else this.inFlight.set(v.url, left);
    };
  }

  private async call(v: ValidatorConfig, body: string, bodyBytes: number): Promise<Verdict> {
    if (bodyBytes > v.bodyBytesMax) {
      return { ok: false, failed: true, reason: `the write is ${bodyBytes} bytes as JSON, over this validator's bodyBytesMax of ${v.bodyBytesMax}` };
    }
    const signal = AbortSignal.timeout(v.timeoutMs);
    try {
      const res = await fetch(v.url, { method: "POST", headers: { "content-type": "application/json" }, body, signal, redirect: "error" });
      const text = await readCapped(res, ANSWER_BYTES_MAX);
      if (text === null) return { ok: false, failed: true, reason: `its answer is over ${ANSWER_BYTES_MAX} bytes` };
      if (res.status !== 200) return { ok: false, failed: true, reason: `it answered HTTP ${res.status}, not 200` };
      return parseAnswer(text);
    } catch (e) {
      if (signal.aborted) return { ok: false, failed: true, reason: `no answer within its timeoutMs of ${v.timeoutMs} ms` };
      return { ok: false, failed: true, reason: `cannot reach it: ${(e as Error).message}` };
    }
  }
}

/** The body as text, or null once it passes `max` bytes (the rest is not read). */
async function readCapped(res: Response, max: number): Promise<string | null> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      void reader.cancel().catch(() => {});
      return null;
    }
    parts.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(parts));
}

function parseAnswer(text: string): Verdict {
  let a: unknown;
  try {
    a = JSON.parse(text);
  } catch {
    return { ok: false, failed: true, reason: `its answer is not JSON: ${text.slice(0, 80)}` };
  }
  const o = a as { ok?: unknown; reason?: unknown } | null;
  if (o !== null && typeof o === "object" && o.ok === true) return { ok: true };
  if (o !== null && typeof o === "object" && o.ok === false) {
    const reason = typeof o.reason === "string" && o.reason !== "" ? o.reason.slice(0, REASON_CHARS_MAX) : "no reason given";
    return { ok: false, failed: false, reason };
  }
  return { ok: false, failed: true, reason: 'its answer is neither {"ok": true} nor {"ok": false, "reason": "..."}' };
}

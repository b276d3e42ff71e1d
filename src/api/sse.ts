/**
 * GET /changes/stream: the change feed as Server-Sent Events.
 *
 * The stream is pull-based: the next page of changes is read from the local
 * copy only when the runtime has sent the previous one to the client, so a
 * slow client costs one page of memory, never a growing queue. A client that
 * reads nothing for `stallMs` while a page waits for it is dropped (it can
 * resume with Last-Event-ID). Each event's id is the change's feed index.
 */
import { isFatalDbError } from "../platform/sqlite.ts";
import type { NodeApi } from "../node/api.ts";
import type { Change } from "../statemachine/feed.ts";
import type { Logger } from "../util/log.ts";
import { oncePerPage } from "./encode.ts";

export interface SseMessage {
  readonly id?: string;
  readonly event?: string;
  readonly data: string;
}

/** One SSE message; multi-line data becomes several data: lines. */
export function formatSse(m: SseMessage): string {
  for (const [name, v] of [["id", m.id], ["event", m.event]] as const) {
    if (v !== undefined && /[\r\n]/.test(v)) throw new Error(`SSE ${name} ${JSON.stringify(v)} contains a line break`);
  }
  let out = "";
  if (m.event !== undefined) out += `event: ${m.event}\n`;
  if (m.id !== undefined) out += `id: ${m.id}\n`;
  for (const line of m.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return out + "\n";
}

/** A comment line: ignored by clients, keeps proxies and idle timers from closing the stream. */
export function formatSseComment(text: string): string {
  return text.split(/\r\n|\r|\n/).map((l) => `: ${l}\n`).join("") + "\n";
}

export function formatChangeEvent(c: Change): string {
  return formatSse({ id: String(c.index), event: "change", data: JSON.stringify(c) });
}

/** A page's events, rendered once per page (subscribers woken by the same change share it). */
const pageEvents = oncePerPage((page) => page.changes.map(formatChangeEvent).join(""));

/** Last-Event-ID as a feed index, or undefined when absent or not an index. */
export function lastEventIdOf(raw: string | null): number | undefined {
  if (raw === null) return undefined;
  const v = raw.trim();
  if (!/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

export interface ChangeStreamOptions {
  readonly node: NodeApi;
  /** Changes after this index; undefined: from the oldest retained one. */
  readonly since: number | undefined;
  readonly tags: readonly string[];
  /** Aborted on client disconnect or server shutdown: the stream ends. */
  readonly signal: AbortSignal;
  readonly keepaliveMs: number;
  readonly stallMs: number;
  readonly pageLimit: number;
  readonly log: Logger;
  /** The body of the `gone` event when the client fell behind the retained feed. */
  readonly gone: (resumeFrom: number) => Record<string, unknown>;
  /** Called once when the stream ends, however it ends. */
  readonly onClose: () => void;
}

/** Reconnect delay suggested to EventSource clients. */
const RETRY_MS = 1000;
/** A feed wait that ends this much before its time without news was refused by the node. */
const EARLY_MS = 5;

/** What the stream sends next, and whether it ends after that. */
type Step = { readonly text: string; readonly end: boolean } | null;

export function changeStream(o: ChangeStreamOptions): ReadableStream<Uint8Array> {
  const s = new ChangeStream(o);
  return new ReadableStream<Uint8Array>(
    { start: (c) => s.start(c), pull: (c) => s.pull(c), cancel: () => s.finish() },
    { highWaterMark: 1 },
  );
}

class ChangeStream {
  private readonly enc = new TextEncoder();
  private readonly stop = new AbortController();
  private cursor: number | undefined;
  private lastSentMs = Date.now();
  private inPull = false;
  private idleSinceMs = Date.now();
  private closed = false;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private ctrl: ReadableStreamDefaultController<Uint8Array> | undefined;
  private readonly onAbort = (): void => {
    this.stop.abort();
    // A pull under way sees the abort and closes; otherwise close here.
    if (!this.inPull) this.close();
  };

  constructor(private readonly o: ChangeStreamOptions) {
    this.cursor = o.since;
    o.signal.addEventListener("abort", this.onAbort, { once: true });
    if (o.signal.aborted) this.stop.abort();
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.ctrl = controller;
    controller.enqueue(this.enc.encode(`${formatSseComment("cairn change stream")}retry: ${RETRY_MS}\n\n`));
    const everyMs = Math.max(10, Math.min(this.o.keepaliveMs, this.o.stallMs / 2));
    this.watchdog = setInterval(() => this.checkStall(), everyMs);
  }

  /** Drops a client that has left a page unread for stallMs. */
  private checkStall(): void {
    const c = this.ctrl;
    const stalled = c !== undefined && !this.inPull && (c.desiredSize ?? 1) <= 0 && Date.now() - this.idleSinceMs > this.o.stallMs;
    if (this.closed || !stalled) return;
    this.o.log.warn("SSE client dropped: it read nothing for too long", { stallMs: this.o.stallMs, cursor: this.cursor });
    this.finish();
    c.error(new Error(`the client read nothing for ${this.o.stallMs} ms`));
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    this.inPull = true;
    try {
      const step = await this.next();
      if (this.closed) return;
      if (step !== null) {
        controller.enqueue(this.enc.encode(step.text));
        this.lastSentMs = Date.now();
      }
      if (step === null || step.end) this.close();
    } catch (err) {
      if (this.closed) return;
      // A damaged or failing database under the stream is the node's end, as under any request.
      if (isFatalDbError(err)) this.o.node.fatal?.(err);
      else this.o.log.error("SSE stream failed", { err, cursor: this.cursor });
      const data = JSON.stringify({ code: "internal", message: "the stream failed; reconnect with Last-Event-ID" });
      controller.enqueue(this.enc.encode(formatSse({ event: "error", data })));
      this.close();
    } finally {
      this.inPull = false;
      this.idleSinceMs = Date.now();
    }
  }

  /** The next changes, a keepalive, a `gone` event, or null to end. */
  private async next(): Promise<Step> {
    const o = this.o;
    for (;;) {
      if (this.stop.signal.aborted) return null;
      const since = this.cursor === undefined ? {} : { since: this.cursor };
      const page = o.node.fsm.listChanges({ ...since, tags: o.tags, limit: o.pageLimit });
      if (this.cursor !== undefined && this.cursor < page.first - 1) {
        return { text: formatSse({ event: "gone", data: JSON.stringify(o.gone(page.first - 1)) }), end: true };
      }
      this.cursor = page.next;
      if (page.changes.length > 0) return { text: pageEvents(page), end: false };
      const waitMs = o.keepaliveMs - (Date.now() - this.lastSentMs);
      if (waitMs <= 0) return { text: formatSseComment("keepalive"), end: false };
      const until = Date.now() + waitMs;
      const news = await o.node.waitForFeed(page.last, waitMs, this.stop.signal);
      // Refused at once (too many waiters, node stopping): end rather than spin; the client resumes.
      if (!news && !this.stop.signal.aborted && Date.now() < until - EARLY_MS) return null;
    }
  }

  private close(): void {
    if (this.closed) return;
    this.finish();
    try {
      this.ctrl?.close();
    } catch {
      // already closed or errored by the runtime
    }
  }

  /** Releases everything once, however the stream ends. */
  finish(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    this.stop.abort();
    this.o.signal.removeEventListener("abort", this.onAbort);
    this.o.onClose();
  }
}

/**
 * GET /changes/stream: the change feed as Server-Sent Events.
 *
 * The stream is pull-based: the next page of changes is read from the local
 * copy only when the runtime has sent the previous one to the client, so a
 * slow client costs one page of memory, never a growing queue. A client that
 * reads nothing for `stallMs` while a page waits for it is dropped (it can
 * resume with Last-Event-ID). Each event's id is the change's feed index.
 */
import type { NodeApi } from "../node/api.ts";
import type { Change } from "../statemachine/feed.ts";
import type { Logger } from "../util/log.ts";

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

export function changeStream(o: ChangeStreamOptions): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  const stop = new AbortController();
  let cursor = o.since;
  let lastSentMs = Date.now();
  let inPull = false;
  let idleSinceMs = Date.now();
  let closed = false;
  let watchdog: ReturnType<typeof setInterval> | undefined;
  let ctrl: ReadableStreamDefaultController<Uint8Array> | undefined;
  // A pull under way sees the abort and closes; otherwise close here.
  const onAbort = (): void => {
    stop.abort();
    if (inPull || closed) return;
    finish();
    try {
      ctrl?.close();
    } catch {
      // already closed or errored by the runtime
    }
  };
  o.signal.addEventListener("abort", onAbort, { once: true });
  if (o.signal.aborted) stop.abort();

  const finish = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(watchdog);
    stop.abort();
    o.signal.removeEventListener("abort", onAbort);
    o.onClose();
  };

  /** The next text to send, and whether the stream ends after it. */
  const next = async (): Promise<{ text: string; end: boolean } | null> => {
    for (;;) {
      if (stop.signal.aborted) return null;
      const page = o.node.fsm.listChanges({ ...(cursor === undefined ? {} : { since: cursor }), tags: o.tags, limit: o.pageLimit });
      if (cursor !== undefined && cursor < page.first - 1) {
        return { text: formatSse({ event: "gone", data: JSON.stringify(o.gone(page.first - 1)) }), end: true };
      }
      cursor = page.next;
      if (page.changes.length > 0) return { text: page.changes.map(formatChangeEvent).join(""), end: false };
      const quietMs = Date.now() - lastSentMs;
      if (quietMs >= o.keepaliveMs) return { text: formatSseComment("keepalive"), end: false };
      await o.node.waitForFeed(page.last, o.keepaliveMs - quietMs, stop.signal);
    }
  };

  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        ctrl = controller;
        controller.enqueue(enc.encode(`${formatSseComment("cairn change stream")}retry: ${RETRY_MS}\n\n`));
        watchdog = setInterval(() => {
          const stalled = !inPull && (controller.desiredSize ?? 1) <= 0 && Date.now() - idleSinceMs > o.stallMs;
          if (closed || !stalled) return;
          o.log.warn("SSE client dropped: it read nothing for too long", { stallMs: o.stallMs, cursor });
          finish();
          controller.error(new Error(`the client read nothing for ${o.stallMs} ms`));
        }, Math.max(10, Math.min(o.keepaliveMs, o.stallMs / 2)));
      },
      async pull(controller) {
        inPull = true;
        try {
          const out = await next();
          if (closed) return;
          if (out === null) {
            finish();
            controller.close();
            return;
          }
          controller.enqueue(enc.encode(out.text));
          lastSentMs = Date.now();
          if (out.end) {
            finish();
            controller.close();
          }
        } catch (err) {
          if (closed) return;
          o.log.error("SSE stream failed", { err, cursor });
          controller.enqueue(enc.encode(formatSse({ event: "error", data: JSON.stringify({ code: "internal", message: "the stream failed; reconnect with Last-Event-ID" }) })));
          finish();
          controller.close();
        } finally {
          inPull = false;
          idleSinceMs = Date.now();
        }
      },
      cancel() {
        finish();
      },
    },
    { highWaterMark: 1 },
  );
}

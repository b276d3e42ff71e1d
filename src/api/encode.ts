/**
 * How stored values and command results appear in JSON answers.
 *
 * A value is rendered by the change feed's own encoder (statemachine/kv.ts),
 * so a value reads the same in GET /kv and in the feed:
 *   "value": <JSON>    JSON content types (application/json, *+json) that parse
 *   "text": "..."      text/* that is valid UTF-8
 *   "base64": "..."    everything else
 */
import type { CommandResult, KvWriteResult, Replayed, TxnOpResult, TxnResult, ChangesResult } from "../statemachine/commands.ts";
import { renderValue } from "../statemachine/kv.ts";
import type { ChangePage } from "../statemachine/feed.ts";
import { ApiError } from "./errors.ts";

export { renderValue, type RenderedValue } from "../statemachine/kv.ts";

export function renderTxnOp(r: TxnOpResult): Record<string, unknown> {
  if (r.op !== "get") return { ...r };
  if (r.value === null) return { op: "get", key: r.key, found: false, version: 0 };
  const ct = r.contentType ?? "application/octet-stream";
  return { op: "get", key: r.key, found: true, version: r.version, contentType: ct, ...renderValue(r.value, ct) };
}

/** A command's answer: the status and body, or the ApiError it amounts to. */
export interface Rendered {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/**
 * Renders a state machine result by its shape (not by route: an idempotency
 * key replayed on another route returns the first command's result).
 * `created`: a kv write known to have created its key answers 201.
 */
export function renderResult(result: Replayed<CommandResult>, opts: { created?: boolean } = {}): Rendered {
  const replayed = result.replayed === true ? { replayed: true } : {};
  if ("error" in result) {
    switch (result.error) {
      case "compare_failed":
        throw new ApiError(412, "compare_failed", `key ${JSON.stringify(result.key)} is at version ${result.version}${result.version === 0 ? " (absent)" : ""}: the precondition does not hold; read it again and retry`, {
          extra: { key: result.key, version: result.version, ...replayed },
          ...(result.version > 0 ? { headers: { etag: `"${result.version}"` } } : {}),
        });
      case "not_found":
        throw new ApiError(404, "not_found", `key ${JSON.stringify(result.key)} does not exist`, { extra: { key: result.key, ...replayed } });
      case "invalid":
        throw new ApiError(400, "invalid", result.message);
    }
  }
  if ("succeeded" in result) return { status: 200, body: txnBody(result, replayed) };
  if ("op" in result) return { status: opts.created ? 201 : 200, body: kvBody(result, replayed) };
  return { status: 201, body: changesBody(result, replayed) };
}

function txnBody(r: TxnResult, replayed: object): Record<string, unknown> {
  const range = r.index === undefined ? {} : { index: r.index, last: r.last };
  return { succeeded: r.succeeded, results: r.results.map(renderTxnOp), ...range, term: r.term, ts: r.ts, ...replayed };
}

function kvBody(r: KvWriteResult, replayed: object): Record<string, unknown> {
  return { key: r.key, version: r.version, index: r.index, term: r.term, ts: r.ts, ...replayed };
}

function changesBody(r: ChangesResult, replayed: object): Record<string, unknown> {
  return { index: r.index, last: r.last, term: r.term, ts: r.ts, ...replayed };
}

/**
 * `render` made at most once per page: the long polls and streams woken by the same change share
 * one page (Feed.list keeps it while the feed's bounds stay), and so its text.
 */
export function oncePerPage(render: (page: ChangePage) => string): (page: ChangePage) => string {
  const texts = new WeakMap<ChangePage, string>();
  return (page) => {
    let text = texts.get(page);
    if (text === undefined) texts.set(page, (text = render(page)));
    return text;
  };
}

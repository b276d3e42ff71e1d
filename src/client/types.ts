/**
 * What the client sends and gets back. Request bodies are typed from the
 * zod schemas the server validates with (type-only imports: nothing of the
 * server is loaded at run time); answers mirror src/api/encode.ts.
 */
import type { z } from "zod";
import type { itemSchema } from "../api/changes.ts";
import type { txnSchema } from "../api/txn.ts";
import type { NodeStatus } from "../node/api.ts";
import type { JsonValue } from "../statemachine/commands.ts";
import type { Change } from "../statemachine/feed.ts";

export type { Change, JsonValue, NodeStatus };

/** One change as POST /changes takes it: {data, tags?}. */
export type ChangeInput = z.input<typeof itemSchema>;
/** The body of POST /txn. */
export type TxnRequest = z.input<typeof txnSchema>;

/** Common to every write answer. */
export interface WriteMeta {
  readonly term: number;
  readonly ts: number;
  /** The answer is the stored one of an earlier request with the same Idempotency-Key. */
  readonly replayed?: boolean;
  /** The Idempotency-Key the client sent (generated unless given). */
  readonly idempotencyKey: string;
}

/** POST /changes: the feed index of the (first) change and of the last of a batch. */
export interface PostResult extends WriteMeta {
  readonly index: number;
  readonly last: number;
}

export interface KvWriteResult extends WriteMeta {
  readonly key: string;
  readonly version: number;
  readonly index: number;
}

export interface KvValue {
  readonly key: string;
  readonly version: number;
  readonly contentType: string;
  readonly bytes: Uint8Array;
  /** The bytes as UTF-8 text. */
  text(): string;
  /** The bytes parsed as JSON. */
  json<T = JsonValue>(): T;
}

/** One item of GET /kv: the value rendered as JSON (value), text or base64. */
export interface KvListItem {
  readonly key: string;
  readonly version: number;
  readonly contentType: string;
  readonly value?: JsonValue;
  readonly text?: string;
  readonly base64?: string;
}

export interface KvListPage {
  readonly items: KvListItem[];
  /** Pass as `after` for the next page; absent on the last page. */
  readonly next?: string;
}

export interface ChangePage {
  readonly changes: Change[];
  readonly first: number;
  readonly last: number;
  readonly atStart: boolean;
  readonly atEnd: boolean;
  readonly next: number;
}

export interface TxnOpResult {
  readonly op: "put" | "del" | "get";
  readonly key: string;
  readonly version?: number;
  readonly found?: boolean;
  readonly contentType?: string;
  readonly value?: JsonValue;
  readonly text?: string;
  readonly base64?: string;
}

export interface TxnResult extends WriteMeta {
  readonly succeeded: boolean;
  readonly results: TxnOpResult[];
  readonly index?: number;
  readonly last?: number;
}

export interface CheckpointInfo {
  readonly id: string;
  readonly index: number;
  readonly feedLast: number;
  readonly bytes: number;
  readonly sha256: string;
  readonly [k: string]: unknown;
}

export type Consistency = "linearizable" | "stale";

/**
 * The commands of the cairn state machine, as they travel in Raft entries
 * (CBOR, cbor-x, plain maps), and their results.
 *
 * The same validation runs when a command is proposed (encodeCommand: the API
 * answers 400/413 at once) and when it is applied (decodeCommand: a bad entry
 * becomes an `invalid` result instead of an exception that would stop the
 * node). Validation only looks at the command, so every node decides alike.
 */
// Not the package root: "cbor-x" loads the native cbor-extract addon, which
// crashes Bun (segfault while decoding strings) and kills Deno (undefined V8
// symbol). The subpath is the same pure-JS codec without it.
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import * as L from "./limits.ts";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ChangeItem {
  readonly data: JsonValue;
  readonly tags: readonly string[];
}

/** Fields every command has. `ts` is the leader's clock (ms) at proposal. */
interface Base {
  readonly ts: number;
  /** Idempotency key: a repeated key returns the first result and changes nothing. */
  readonly idem?: string;
}

export interface ChangesCmd extends Base {
  readonly op: "changes";
  readonly items: readonly ChangeItem[];
}

export interface PutCmd extends Base {
  readonly op: "put";
  readonly key: string;
  readonly value: Uint8Array;
  readonly contentType: string;
  /** Compare-and-set: the key's current version must be this (0 = absent). */
  readonly ifMatch?: number;
  /** Create only: the key must not exist. */
  readonly ifNoneMatch?: boolean;
}

export interface DelCmd extends Base {
  readonly op: "del";
  readonly key: string;
  readonly ifMatch?: number;
}

export type CompareTarget = "version" | "value" | "exists";
export type CompareOp = "=" | "!=" | "<" | ">";

/**
 * version: number (0 = absent); value: bytes, compared byte-wise, never true
 * for an absent key; exists: boolean, only "=" and "!=".
 */
export interface Compare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly op: CompareOp;
  readonly value: number | Uint8Array | boolean;
}

export type TxnOp =
  | { readonly op: "put"; readonly key: string; readonly value: Uint8Array; readonly contentType: string }
  | { readonly op: "del"; readonly key: string }
  | { readonly op: "get"; readonly key: string };

export interface TxnCmd extends Base {
  readonly op: "txn";
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
}

export type Command = ChangesCmd | PutCmd | DelCmd | TxnCmd;

// ---- results ----

/** Where the command's changes landed in the feed: [index, last] (feed indexes). */
export interface ChangesResult {
  readonly index: number;
  readonly last: number;
  readonly term: number;
  readonly ts: number;
}

export interface KvWriteResult {
  readonly op: "put" | "del";
  readonly key: string;
  /** The feed index of this write: the key's new version (for del, the index of the deleting change). */
  readonly version: number;
  readonly index: number;
  readonly term: number;
  readonly ts: number;
}

export interface CompareFailed {
  readonly error: "compare_failed";
  readonly key: string;
  /** The key's current version, 0 when absent. */
  readonly version: number;
}

export interface NotFound {
  readonly error: "not_found";
  readonly key: string;
}

export interface Invalid {
  readonly error: "invalid";
  readonly message: string;
}

export type TxnOpResult =
  | { readonly op: "put"; readonly key: string; readonly version: number }
  | { readonly op: "del"; readonly key: string; readonly deleted: boolean; readonly version: number }
  | { readonly op: "get"; readonly key: string; readonly value: Uint8Array | null; readonly contentType: string | null; readonly version: number };

export interface TxnResult {
  readonly succeeded: boolean;
  readonly results: readonly TxnOpResult[];
  /** The feed range of the branch's writes; absent when it wrote nothing. */
  readonly index?: number;
  readonly last?: number;
  readonly term: number;
  readonly ts: number;
}

export type CommandResult = ChangesResult | KvWriteResult | CompareFailed | NotFound | Invalid | TxnResult;

/** A result returned again for a repeated idempotency key carries `replayed: true`. */
export type Replayed<T> = T & { readonly replayed?: true };

/** A command that breaks a rule or limit. `tooLarge` maps to HTTP 413, the rest to 400. */
export class InvalidCommandError extends Error {
  override name = "InvalidCommandError";
  constructor(readonly reason: string, readonly tooLarge = false) {
    super(`invalid command: ${reason}`);
  }
}

// Plain CBOR maps (no cbor-x records) and untagged byte strings, so that any
// CBOR decoder, in any cairn version, reads the same command.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
// Decoding into objects, cbor-x renames a "__proto__" key to "__proto_" (its
// guard against prototype pollution), which changed accepted data. Maps
// come out as Map instead and plainOf defines every key as an own property.
const mapDecoder = new Decoder({ useRecords: false, mapsAsObjects: false });
/** Nesting of a decoded command: the command's own levels plus JSON_DEPTH_MAX of data, with room. */
const DECODE_DEPTH_MAX = L.JSON_DEPTH_MAX + 16;

/** Decodes CBOR with maps as plain objects whose keys are exactly the encoded ones. */
function decodeCbor(bytes: Uint8Array): unknown {
  return plainOf(mapDecoder.decode(bytes), 0);
}

function plainOf(v: unknown, depth: number): unknown {
  if (depth > DECODE_DEPTH_MAX) throw new InvalidCommandError(`CBOR nests deeper than ${DECODE_DEPTH_MAX}`);
  if (v instanceof Uint8Array) return toPlainBytes(v);
  if (Array.isArray(v)) return v.map((x) => plainOf(x, depth + 1));
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v) {
      if (typeof k !== "string") throw new InvalidCommandError(`a CBOR map has a ${typeof k} key, not a string`);
      // defineProperty, not assignment: "__proto__" must become an own key, never the prototype.
      Object.defineProperty(o, k, { value: plainOf(x, depth + 1), enumerable: true, writable: true, configurable: true });
    }
    return o;
  }
  return v;
}

/** Validates and encodes; throws InvalidCommandError. */
export function encodeCommand(cmd: Command): Uint8Array {
  const valid = validateCommand(cmd);
  return toPlainBytes(cbor.encode(valid));
}

/** Decodes and validates; throws InvalidCommandError. */
export function decodeCommand(bytes: Uint8Array): Command {
  let raw: unknown;
  try {
    raw = decodeCbor(bytes);
  } catch (err) {
    if (err instanceof InvalidCommandError) throw err;
    throw new InvalidCommandError(`not CBOR: ${(err as Error).message}`);
  }
  return validateCommand(raw);
}

/** CBOR for stored results (idempotency table). */
export function encodeResult(result: unknown): Uint8Array {
  return toPlainBytes(cbor.encode(result));
}

export function decodeResult(bytes: Uint8Array): unknown {
  return decodeCbor(bytes);
}

/** Checks shape and limits; returns a copy holding only the known fields. */
export function validateCommand(raw: unknown): Command {
  const o = record(raw, "command");
  const base = { ts: timestamp(o.ts), ...(o.idem === undefined ? {} : { idem: idemKey(o.idem) }) };
  switch (o.op) {
    case "changes":
      return { op: "changes", items: changeItems(o.items), ...base };
    case "put":
      return { op: "put", ...putFields(o), ...casFields(o), ...base };
    case "del":
      return { op: "del", key: key(o.key), ...casFields(o), ...base };
    case "txn":
      return txnCommand(o, base);
    default:
      throw new InvalidCommandError(`op ${JSON.stringify(o.op)} is not one of changes, put, del, txn`);
  }
}

function txnCommand(o: Record<string, unknown>, base: { ts: number; idem?: string }): TxnCmd {
  const compare = list(o.compare, "compare", L.TXN_COMPARES_MAX).map(compareOf);
  const success = list(o.success, "success", L.TXN_OPS_MAX).map(txnOp);
  const failure = list(o.failure, "failure", L.TXN_OPS_MAX).map(txnOp);
  const bytes = [...success, ...failure].reduce((n, op) => n + (op.op === "put" ? op.value.byteLength : 0), 0);
  if (bytes > L.COMMAND_BYTES_MAX) throw new InvalidCommandError(`txn values total ${bytes} bytes, over ${L.COMMAND_BYTES_MAX}`, true);
  return { op: "txn", compare, success, failure, ...base };
}

function changeItems(v: unknown): ChangeItem[] {
  const items = list(v, "items", L.BATCH_ITEMS_MAX);
  if (items.length === 0) throw new InvalidCommandError("items is empty: a batch needs at least one change");
  let total = 0;
  return items.map((it, i) => {
    const o = record(it, `items[${i}]`);
    const data = jsonValue(o.data, `items[${i}].data`, 0);
    total += changeDataBytes(data, i);
    if (total > L.COMMAND_BYTES_MAX) throw new InvalidCommandError(`batch data over ${L.COMMAND_BYTES_MAX} bytes`, true);
    const tags = list(o.tags ?? [], `items[${i}].tags`, L.TAGS_PER_CHANGE_MAX).map((t) => tag(t));
    return { data, tags };
  });
}

function changeDataBytes(data: JsonValue, i: number): number {
  const n = utf8Length(JSON.stringify(data));
  if (n > L.CHANGE_DATA_BYTES_MAX) throw new InvalidCommandError(`items[${i}].data is ${n} bytes of JSON, over ${L.CHANGE_DATA_BYTES_MAX}`, true);
  return n;
}

function putFields(o: Record<string, unknown>): { key: string; value: Uint8Array; contentType: string } {
  return { key: key(o.key), value: value(o.value), contentType: contentType(o.contentType) };
}

function casFields(o: Record<string, unknown>): { ifMatch?: number; ifNoneMatch?: boolean } {
  const out: { ifMatch?: number; ifNoneMatch?: boolean } = {};
  if (o.ifMatch !== undefined) out.ifMatch = version(o.ifMatch, "ifMatch");
  if (o.ifNoneMatch !== undefined) {
    if (typeof o.ifNoneMatch !== "boolean") throw new InvalidCommandError("ifNoneMatch must be a boolean");
    if (o.op === "del") throw new InvalidCommandError("ifNoneMatch does not apply to del");
    out.ifNoneMatch = o.ifNoneMatch;
  }
  return out;
}

function compareOf(v: unknown, i: number): Compare {
  const o = record(v, `compare[${i}]`);
  const k = key(o.key);
  const op = o.op;
  if (op !== "=" && op !== "!=" && op !== "<" && op !== ">") throw new InvalidCommandError(`compare[${i}].op must be =, !=, < or >`);
  switch (o.target) {
    case "version":
      return { key: k, target: "version", op, value: version(o.value, `compare[${i}].value`) };
    case "value":
      return { key: k, target: "value", op, value: value(o.value) };
    case "exists":
      if (typeof o.value !== "boolean") throw new InvalidCommandError(`compare[${i}].value must be a boolean for target exists`);
      if (op !== "=" && op !== "!=") throw new InvalidCommandError(`compare[${i}]: target exists takes only = and !=`);
      return { key: k, target: "exists", op, value: o.value };
    default:
      throw new InvalidCommandError(`compare[${i}].target must be version, value or exists`);
  }
}

function txnOp(v: unknown, i: number): TxnOp {
  const o = record(v, `txn op ${i}`);
  switch (o.op) {
    case "put":
      return { op: "put", ...putFields(o) };
    case "del":
      return { op: "del", key: key(o.key) };
    case "get":
      return { op: "get", key: key(o.key) };
    default:
      throw new InvalidCommandError(`txn op ${i}: op must be put, del or get`);
  }
}

// ---- field checks ----

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
    throw new InvalidCommandError(`${what} must be a map`);
  }
  return v as Record<string, unknown>;
}

function list(v: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new InvalidCommandError(`${what} must be an array`);
  if (v.length > max) throw new InvalidCommandError(`${what} has ${v.length} elements, over ${max}`, true);
  return v;
}

function timestamp(v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new InvalidCommandError(`ts must be a non-negative integer (ms), got ${String(v)}`);
  return v;
}

function version(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new InvalidCommandError(`${what} must be a non-negative integer version`);
  return v;
}

/** A string that is non-empty, well-formed UTF-16 (so UTF-8 round-trips) and within `max` bytes. */
function boundedString(v: unknown, what: string, max: number): string {
  if (typeof v !== "string" || v.length === 0) throw new InvalidCommandError(`${what} must be a non-empty string`);
  if (firstLoneSurrogate(v) >= 0) throw new InvalidCommandError(`${what} has an unpaired surrogate: it is not valid Unicode`);
  const n = utf8Length(v);
  if (n > max) throw new InvalidCommandError(`${what} is ${n} bytes, over ${max}`, true);
  return v;
}

export function key(v: unknown): string {
  return boundedString(v, "key", L.KEY_BYTES_MAX);
}

function tag(v: unknown): string {
  return boundedString(v, "tag", L.TAG_BYTES_MAX);
}

function idemKey(v: unknown): string {
  return boundedString(v, "idempotency key", L.IDEM_KEY_BYTES_MAX);
}

function contentType(v: unknown): string {
  return boundedString(v, "contentType", L.CONTENT_TYPE_BYTES_MAX);
}

function value(v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new InvalidCommandError("value must be bytes");
  if (v.byteLength > L.VALUE_BYTES_MAX) throw new InvalidCommandError(`value is ${v.byteLength} bytes, over ${L.VALUE_BYTES_MAX}`, true);
  return toPlainBytes(v);
}

/** Checks that v is JSON (no undefined, bytes, NaN, cycles) within JSON_DEPTH_MAX. */
function jsonValue(v: unknown, what: string, depth: number): JsonValue {
  if (depth > L.JSON_DEPTH_MAX) throw new InvalidCommandError(`${what} nests deeper than ${L.JSON_DEPTH_MAX}`);
  if (v === null || typeof v === "boolean") return v;
  if (typeof v === "string") return wellFormed(v, what);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new InvalidCommandError(`${what} holds ${v}, which JSON cannot carry`);
    return v;
  }
  if (Array.isArray(v)) return v.map((x, i) => jsonValue(x, `${what}[${i}]`, depth + 1));
  if (typeof v === "object" && !(v instanceof Uint8Array) && Object.getPrototypeOf(v) === Object.prototype) {
    // fromEntries defines "__proto__" as an own key instead of setting the prototype.
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => {
        const at = `${what}${pathStep(k)}`;
        return [wellFormed(k, `the key of ${at}`), jsonValue(x, at, depth + 1)];
      }),
    );
  }
  throw new InvalidCommandError(`${what} is not JSON (${typeof v})`);
}

/**
 * A lone surrogate (JSON text can write "\ud800") has no UTF-8 form: stored
 * and read back it would become U+FFFD. Refused, so what is accepted is
 * exactly what comes back.
 */
function wellFormed(s: string, what: string): string {
  const at = firstLoneSurrogate(s);
  if (at >= 0) {
    const hex = s.charCodeAt(at).toString(16).toUpperCase();
    throw new InvalidCommandError(`${what} holds an unpaired surrogate (U+${hex} at character ${at}), which UTF-8 cannot store: send well-formed Unicode`);
  }
  return s;
}

/** The UTF-16 index of the first unpaired surrogate in s, or -1. */
export function firstLoneSurrogate(s: string): number {
  const m = /\p{Surrogate}/u.exec(s);
  return m ? m.index : -1;
}

/** `.name` for identifier-like keys, `["any key"]` for the rest (as a JS path reads). */
export function pathStep(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}

const encoder = new TextEncoder();

export function utf8Length(s: string): number {
  // Exact without allocating for ASCII-heavy text would need a loop; keys
  // and tags are short, and data is measured once per command.
  return encoder.encode(s).byteLength;
}

/** cbor-x and Bun hand out Buffers; a plain Uint8Array compares and stores alike everywhere. */
export function toPlainBytes(b: Uint8Array): Uint8Array {
  return b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

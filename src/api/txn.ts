/**
 * POST /txn: etcd-style transactions. The JSON shape is checked here (zod);
 * types and limits per target are the state machine's (validateCommand).
 *
 *   {"compare": [{"key", "target": "version" | "value" | "exists", "op": "=" | "!=" | "<" | ">", "value"}],
 *    "success": [{"op": "put", "key", "value": "text" | {"base64": "..."}, "contentType"?} | {"op": "del", "key"} | {"op": "get", "key"}],
 *    "failure": [...]}
 *
 * A string value is stored as UTF-8 with text/plain; charset=utf-8 unless a
 * contentType is given; {"base64"} as application/octet-stream.
 */
import { Buffer } from "node:buffer";
import type { Hono } from "hono";
import { z } from "zod";
import { firstLoneSurrogate, type Compare, type TxnCmd, type TxnOp } from "../statemachine/commands.ts";
import type { ApiContext } from "./context.ts";
import { badRequest } from "./errors.ts";
import { readJsonBody } from "./request.ts";
import { propose, zodMessage } from "./write.ts";

const base64Value = z.object({ base64: z.string() }).strict();
const bytesValue = z.union([z.string(), base64Value]);

const compareSchema = z
  .object({
    key: z.string(),
    target: z.enum(["version", "value", "exists"]),
    op: z.enum(["=", "!=", "<", ">"]).default("="),
    value: z.union([z.number(), z.boolean(), z.string(), base64Value]),
  })
  .strict();

const opSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("put"), key: z.string(), value: bytesValue, contentType: z.string().optional() }).strict(),
  z.object({ op: z.literal("del"), key: z.string() }).strict(),
  z.object({ op: z.literal("get"), key: z.string() }).strict(),
]);

// Array lengths are bounded by the body limit here and by TXN_*_MAX in validateCommand (413).
export const txnSchema = z
  .object({
    compare: z.array(compareSchema).default([]),
    success: z.array(opSchema).default([]),
    failure: z.array(opSchema).default([]),
  })
  .strict();

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(s: string, where: string): Uint8Array {
  if (!BASE64_RE.test(s)) throw badRequest(`${where}.base64 is not valid base64 (standard alphabet, padded)`);
  const b = Buffer.from(s, "base64");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function bytesOf(v: string | { base64: string }, where: string): Uint8Array {
  if (typeof v !== "string") return decodeBase64(v.base64, where);
  // TextEncoder would turn a lone surrogate into U+FFFD: the stored value would differ from the one sent.
  const at = firstLoneSurrogate(v);
  if (at >= 0) {
    throw badRequest(`${where} holds an unpaired surrogate (U+${v.charCodeAt(at).toString(16).toUpperCase()} at character ${at}), which UTF-8 cannot store: send well-formed Unicode, or the bytes as {"base64": "..."}`, { path: where });
  }
  return new TextEncoder().encode(v);
}

type ParsedOp = z.infer<typeof opSchema>;

function toOp(o: ParsedOp, where: string): TxnOp {
  if (o.op !== "put") return o;
  const contentType = o.contentType ?? (typeof o.value === "string" ? "text/plain; charset=utf-8" : "application/octet-stream");
  return { op: "put", key: o.key, value: bytesOf(o.value, `${where}.value`), contentType };
}

function toCompare(c: z.infer<typeof compareSchema>, i: number): Compare {
  // Numbers and booleans pass as they are; validateCommand refuses a type that does not fit the target.
  const value = typeof c.value === "string" || (typeof c.value === "object" && c.value !== null) ? bytesOf(c.value, `compare[${i}].value`) : c.value;
  return { key: c.key, target: c.target, op: c.op, value };
}

export function parseTxn(body: unknown): Omit<TxnCmd, "ts" | "idem"> {
  const parsed = txnSchema.safeParse(body);
  if (!parsed.success) throw badRequest(`${zodMessage(parsed.error)}: see POST /txn in the README for the shape`);
  const t = parsed.data;
  return {
    op: "txn",
    compare: t.compare.map(toCompare),
    success: t.success.map((o, i) => toOp(o, `success[${i}]`)),
    failure: t.failure.map((o, i) => toOp(o, `failure[${i}]`)),
  };
}

export function registerTxn(app: Hono, ctx: ApiContext): void {
  app.post("/txn", async (c) => propose(ctx, c, parseTxn(await readJsonBody(c.req.raw, ctx.limits.bodyBytesMax))));
}

/**
 * GET /openapi.json: an OpenAPI 3.1 document of the HTTP API. The paths and
 * methods come from the route table (routes.ts) and the JSON request bodies
 * from the zod schemas the handlers parse with (jsonschema.ts), so neither
 * can drift from what the server does. Every route in ROUTES must have an
 * entry in OPS (asserted when the document is built).
 */
import { z } from "zod";
import { BATCH_ITEMS_MAX, LIST_LIMIT_MAX } from "../statemachine/limits.ts";
import { assert } from "../util/assert.ts";
import { itemSchema } from "./changes.ts";
import { toJsonSchema, type JsonSchema } from "./jsonschema.ts";
import { transferSchema } from "./ops.ts";
import { ROUTES } from "./routes.ts";
import { txnSchema } from "./txn.ts";

/**
 * The zod schema of each JSON request body, by "METHOD template". A function:
 * ops.ts (which serves the document) defines one of them (an import cycle).
 * POST /changes takes one change or a batch (parseChangeItems).
 */
export function bodySchemas(): Readonly<Record<string, z.ZodTypeAny>> {
  return {
    "POST /changes": z.union([itemSchema, z.array(itemSchema).min(1).max(BATCH_ITEMS_MAX)]),
    "POST /txn": txnSchema,
    "POST /admin/leader": transferSchema,
  };
}

interface Param {
  readonly name: string;
  readonly in: "query" | "path" | "header";
  readonly schema: JsonSchema;
  readonly description: string;
}

interface OpDoc {
  readonly summary: string;
  readonly params?: readonly Param[];
  /** Non-JSON bodies (PUT /kv/KEY takes the value's bytes). */
  readonly rawBody?: true;
  /** Status -> description; errors are the common error body. */
  readonly responses: Readonly<Record<string, string>>;
}

const q = (name: string, schema: JsonSchema, description: string): Param => ({ name, in: "query", schema, description });
const h = (name: string, description: string): Param => ({ name, in: "header", schema: { type: "string" }, description });
const CONSISTENCY = q("consistency", { enum: ["linearizable", "strong", "stale"] }, "linearizable (default) reads through a read barrier; stale reads the local copy");
const LIMIT = q("limit", { type: "integer", minimum: 1, maximum: LIST_LIMIT_MAX, default: 100 }, "page size");
const WAIT = q("wait", { enum: ["applied", "accepted", "none"] }, "applied (default) answers once applied; none/accepted answers 202 once the leader appended it");
const IDEM = h("Idempotency-Key", "a retried write with the same key is applied once and answers the first result with replayed: true");
const SINCE = q("since", { type: "integer", minimum: 0 }, "feed index to read after");
const TAG = q("tag", { type: "string", minLength: 1 }, "only changes with this tag (repeatable)");
const WRITE = { "400": "the body or a parameter is wrong", "503": "no leader or too busy: retry after Retry-After" };

const OPS: Readonly<Record<string, OpDoc>> = {
  "GET /": { summary: "the HTML dashboard (open as /#token=TOKEN with tokens on)", responses: { "200": "text/html" } },
  "GET /openapi.json": { summary: "this document", responses: { "200": "the OpenAPI 3.1 document" } },
  "POST /changes": { summary: "append a change or an atomic batch to the feed", params: [WAIT, IDEM], responses: { "201": "the indexes given", "202": "accepted", ...WRITE } },
  "GET /changes": {
    summary: "a page of the feed; long poll with block",
    params: [SINCE, q("since_ts", { type: "string" }, "ms since 1970 or ISO 8601"), LIMIT, TAG, q("block", { type: "number", minimum: 0 }, "seconds to wait for a first change"), CONSISTENCY],
    responses: { "200": "changes, next, atEnd", "410": "since is below the retained feed: load the checkpoint" },
  },
  "GET /changes/stream": { summary: "the feed as server-sent events", params: [SINCE, TAG, CONSISTENCY, h("Last-Event-ID", "resume after this index")], responses: { "200": "text/event-stream", "410": "gone" } },
  "GET /changes/{index}": { summary: "one change", params: [CONSISTENCY], responses: { "200": "the change", "404": "not yet", "410": "trimmed" } },
  "GET /kv": { summary: "list keys", params: [q("prefix", { type: "string" }, "keys starting with"), q("after", { type: "string" }, "keys after (paging)"), LIMIT, CONSISTENCY], responses: { "200": "items, next" } },
  "GET /kv/{key}": { summary: "a value (its bytes, with its content type and version as ETag)", params: [CONSISTENCY, h("If-None-Match", "304 when the version is one of these")], responses: { "200": "the value", "304": "unchanged", "404": "absent" } },
  "PUT /kv/{key}": {
    summary: "set a value (the body's bytes, with its Content-Type)",
    rawBody: true,
    params: [WAIT, IDEM, h("If-Match", "version, \"version\" or * (must exist)"), h("If-None-Match", "* (create only)")],
    responses: { "200": "replaced", "201": "created", "202": "accepted", "412": "precondition failed", ...WRITE },
  },
  "DELETE /kv/{key}": { summary: "delete a key", params: [WAIT, IDEM, h("If-Match", "version")], responses: { "200": "deleted", "404": "absent", "412": "precondition failed", ...WRITE } },
  "POST /txn": { summary: "compare-and-swap transaction", params: [WAIT, IDEM], responses: { "200": "succeeded and results", "202": "accepted", ...WRITE } },
  "GET /status": { summary: "this node's view of the cluster", responses: { "200": "role, term, indexes, members, problems" } },
  "GET /health": { summary: "liveness (no token needed)", responses: { "200": "ok", "503": "the node failed" } },
  "GET /ready": { summary: "readiness: has a leader and caught up", responses: { "200": "ready", "503": "not ready, with the reason" } },
  "GET /metrics": { summary: "Prometheus text exposition", responses: { "200": "text/plain" } },
  "POST /admin/leader": { summary: "hand leadership over", responses: { "200": "from, to", ...WRITE } },
  "POST /admin/checkpoint": { summary: "build a checkpoint now", responses: { "200": "its manifest" } },
  "GET /checkpoints": { summary: "this node's checkpoints, newest first", responses: { "200": "manifests" } },
  "GET /checkpoints/{id}": { summary: "download a checkpoint (SQLite file)", responses: { "200": "application/vnd.sqlite3", "404": "no such checkpoint" } },
};

/** "/changes/:index" -> "/changes/{index}". */
export function openApiPath(template: string): string {
  return template.replace(/:([A-Za-z]+)/g, "{$1}");
}

const ERROR_SCHEMA: JsonSchema = {
  type: "object",
  properties: { error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" } }, required: ["code", "message"] } },
  required: ["error"],
};

function operation(method: string, path: string, doc: OpDoc): JsonSchema {
  const pathParams = [...path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
  const params = [...pathParams, ...(doc.params ?? [])];
  const zod = bodySchemas()[`${method} ${path.replace(/\{(\w+)\}/g, ":$1")}`];
  const requestBody = zod
    ? { required: method !== "POST" || path !== "/admin/leader", content: { "application/json": { schema: toJsonSchema(zod) } } }
    : doc.rawBody
      ? { required: true, content: { "*/*": { schema: { type: "string", format: "binary" } } } }
      : undefined;
  const responses: Record<string, unknown> = {};
  for (const [status, description] of Object.entries(doc.responses)) {
    responses[status] = Number(status) >= 400 ? { description, content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } } : { description };
  }
  responses.default = { description: "an error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } };
  return { summary: doc.summary, ...(params.length ? { parameters: params } : {}), ...(requestBody ? { requestBody } : {}), responses };
}

/** The document; GET routes also answer HEAD (not listed: OpenAPI implies nothing about HEAD). */
export function openApiDocument(version: string): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const r of ROUTES) {
    const path = openApiPath(r.template);
    for (const method of r.methods) {
      const doc = OPS[`${method} ${path}`];
      assert(doc !== undefined, `route ${method} ${r.template} has no entry in src/api/openapi.ts OPS: document it`);
      (paths[path] ??= {})[method.toLowerCase()] = operation(method, path, doc);
    }
  }
  for (const key of Object.keys(OPS)) {
    const [method, path] = key.split(" ") as [string, string];
    assert(paths[path]?.[method.toLowerCase()] !== undefined, `src/api/openapi.ts documents ${key}, which is not in ROUTES`);
  }
  return {
    openapi: "3.1.0",
    info: { title: "cairn", version, description: "A replicated change log and key-value store. Errors are {\"error\": {\"code\", \"message\"}}." },
    components: {
      schemas: { Error: ERROR_SCHEMA },
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "an API token (cairn token add); /health, / and /openapi.json need none" } },
    },
    security: [{ bearer: [] }],
    paths,
  };
}

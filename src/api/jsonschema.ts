/**
 * JSON Schema (2020-12, the dialect of OpenAPI 3.1) of the zod 3 schemas the
 * routes validate with. zod 3.25's own converter (zod/v4 toJSONSchema) takes
 * only zod 4 schemas, so this covers the subset the routes use; any other zod
 * type is an assertion failure, so a route schema cannot grow a construct the
 * document silently leaves out.
 */
import type { ZodTypeAny } from "zod";
import { assert } from "../util/assert.ts";

export type JsonSchema = Record<string, unknown>;

interface Check {
  readonly kind: string;
  readonly value?: number;
  readonly regex?: RegExp;
  readonly inclusive?: boolean;
}

/** Nesting deeper than this is a schema bug (a recursive schema), not a document. */
const DEPTH_MAX = 32;

export function toJsonSchema(schema: ZodTypeAny, depth = 0): JsonSchema {
  assert(depth <= DEPTH_MAX, `zod schema nests deeper than ${DEPTH_MAX}: recursive schemas are not supported`);
  const def = schema._def as Record<string, unknown> & { typeName: string };
  const inner = (s: unknown) => toJsonSchema(s as ZodTypeAny, depth + 1);
  switch (def.typeName) {
    case "ZodString":
      return withChecks({ type: "string" }, def.checks as Check[]);
    case "ZodNumber":
      return withChecks({ type: "number" }, def.checks as Check[]);
    case "ZodBoolean":
      return { type: "boolean" };
    case "ZodLiteral":
      return { const: def.value };
    case "ZodEnum":
      return { enum: [...(def.values as string[])] };
    case "ZodUnknown":
    case "ZodAny":
      return {};
    case "ZodArray":
      return arraySchema(def, inner);
    case "ZodObject":
      return objectSchema(schema, def, inner);
    case "ZodUnion":
      return { anyOf: (def.options as ZodTypeAny[]).map(inner) };
    case "ZodDiscriminatedUnion":
      return { oneOf: [...(def.options as ZodTypeAny[])].map(inner) };
    case "ZodOptional":
      return inner(def.innerType);
    case "ZodDefault":
      return { ...inner(def.innerType), default: (def.defaultValue as () => unknown)() };
    case "ZodEffects":
      // A refine keeps the shape; the check itself has no JSON Schema form.
      return inner(def.schema);
    default:
      assert(false, `zod type ${def.typeName} has no JSON Schema conversion: add it to src/api/jsonschema.ts`);
      return {};
  }
}

function withChecks(base: JsonSchema, checks: readonly Check[]): JsonSchema {
  const out = { ...base };
  for (const c of checks) {
    if (c.kind === "min") out[base.type === "string" ? "minLength" : c.inclusive === false ? "exclusiveMinimum" : "minimum"] = c.value;
    else if (c.kind === "max") out[base.type === "string" ? "maxLength" : c.inclusive === false ? "exclusiveMaximum" : "maximum"] = c.value;
    else if (c.kind === "regex") out.pattern = c.regex!.source;
    else if (c.kind === "int") out.type = "integer";
    else assert(false, `zod ${String(base.type)} check ${c.kind} has no JSON Schema conversion: add it to src/api/jsonschema.ts`);
  }
  return out;
}

function arraySchema(def: Record<string, unknown>, inner: (s: unknown) => JsonSchema): JsonSchema {
  const len = (k: string) => (def[k] as { value: number } | null)?.value;
  const min = len("minLength");
  const max = len("maxLength");
  assert(def.exactLength === null, "zod array .length() has no JSON Schema conversion: use min and max");
  return { type: "array", items: inner(def.type), ...(min === undefined ? {} : { minItems: min }), ...(max === undefined ? {} : { maxItems: max }) };
}

function objectSchema(schema: ZodTypeAny, def: Record<string, unknown>, inner: (s: unknown) => JsonSchema): JsonSchema {
  const shape = (def.shape as () => Record<string, ZodTypeAny>)();
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const [k, v] of Object.entries(shape)) {
    properties[k] = inner(v);
    const t = (v._def as { typeName: string }).typeName;
    if (t !== "ZodOptional" && t !== "ZodDefault") required.push(k);
  }
  assert(def.catchall === undefined || (def.catchall as ZodTypeAny)._def.typeName === "ZodNever", `zod object catchall on ${schema.description ?? "a schema"} is not supported`);
  const strict = def.unknownKeys === "strict";
  return { type: "object", properties, ...(required.length ? { required } : {}), ...(strict ? { additionalProperties: false } : {}) };
}

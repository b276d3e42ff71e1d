/** Typed column readers shared by the storage and state machine code. */
import type { Row } from "../platform/sqlite.ts";
import { assert } from "../util/assert.ts";

/** Column readers that turn a wrong type (a damaged file) into a clear assertion. */
export function int(r: Row, col: string): number {
  const v = r[col];
  assert(typeof v === "number" && Number.isSafeInteger(v), () => `column ${col} is ${String(v)}, not an integer`);
  return v;
}

export function str(r: Row, col: string): string {
  const v = r[col];
  assert(typeof v === "string", () => `column ${col} is ${String(v)}, not text`);
  return v;
}

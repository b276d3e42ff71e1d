/**
 * Run under bun or deno by cbor.test.ts: loads the decoder platform/cbor.ts
 * picks (CAIRN_CBOR as given), then round-trips string-heavy commands and
 * peer frames through it. Prints one JSON line: {runtime, impl, roundtrips}.
 */
import fc from "fast-check";
import { loadNativeCbor } from "../../src/platform/cbor.ts";
import { decodeCommand, encodeCommand, type Command } from "../../src/statemachine/commands.ts";

const impl = await loadNativeCbor();
// Every string length class of CBOR (tiny, 8-, 16-bit lengths; the extractor batches short ones) and non-ASCII text.
const text = fc.oneof(fc.string({ unit: "grapheme", maxLength: 30 }), fc.string({ unit: "binary-ascii", minLength: 24, maxLength: 300 }), fc.string({ maxLength: 70_000, minLength: 256 }));
const item = fc.record({ data: fc.dictionary(text.filter((k) => k !== "__proto__"), text, { maxKeys: 8, noNullPrototype: true }), tags: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 4 }) });
let roundtrips = 0;
fc.assert(
  fc.property(fc.array(item, { minLength: 1, maxLength: 20 }), (items) => {
    const cmd = { op: "changes", items, ts: 1 } as Command;
    const back = decodeCommand(encodeCommand(cmd)) as Command & { items: unknown };
    if (JSON.stringify(back.items) !== JSON.stringify(items)) throw new Error(`round trip differs under ${impl}`);
    roundtrips++;
  }),
  { numRuns: 200 },
);
const runtime = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined" ? "deno" : "bun";
console.log(JSON.stringify({ runtime, impl, roundtrips }));

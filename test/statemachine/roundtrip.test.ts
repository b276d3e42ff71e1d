/**
 * Commands keep their data exactly through encodeCommand/decodeCommand (the
 * Raft entry format): cbor-x decoding into objects renamed "__proto__" to
 * "__proto_"; lone surrogates have no UTF-8 form and are refused at both ends.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Encoder } from "cbor-x/encode";
import { decodeCommand, decodeResult, encodeCommand, encodeResult, InvalidCommandError, type ChangesCmd } from "../../src/statemachine/commands.ts";
import { canonical, fuzzParams, hasLoneSurrogate, objectOf, oddJson } from "../helpers/fuzz.ts";

const cmd = (data: unknown): ChangesCmd => ({ op: "changes", ts: 1, items: [{ data: data as never, tags: ["t"] }] });

describe("command data round trip", () => {
  test("__proto__, constructor and prototype keys survive encode and decode as own keys", () => {
    const data = objectOf([["__proto__", objectOf([["__proto__", 1]])], ["constructor", { prototype: 2 }]]);
    const back = decodeCommand(encodeCommand(cmd(data))) as ChangesCmd;
    const d = back.items[0]!.data as Record<string, unknown>;
    expect(Object.keys(d)).toEqual(["__proto__", "constructor"]);
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype);
    expect(JSON.stringify(d)).toBe('{"__proto__":{"__proto__":1},"constructor":{"prototype":2}}');
  });

  test("an entry written by the previous code (same CBOR) still decodes", () => {
    // The entry format did not change: plain CBOR maps, as this encoder wrote them before.
    const old = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false }).encode({ op: "changes", ts: 5, items: [{ data: { a: [1, "x"] }, tags: [] }] });
    expect(decodeCommand(old)).toEqual({ op: "changes", ts: 5, items: [{ data: { a: [1, "x"] }, tags: [] }] });
  });

  test("a lone surrogate in data or a key is an InvalidCommandError naming the place", () => {
    expect(() => encodeCommand(cmd({ a: ["\ud800"] }))).toThrow(InvalidCommandError);
    expect(() => encodeCommand(cmd({ a: ["\ud800"] }))).toThrow("items[0].data.a[0]");
    expect(() => encodeCommand(cmd(objectOf([["x\udfff", 1]])))).toThrow("the key of items[0].data");
  });

  test("a map with a non-string key in an entry is invalid, not a crash", () => {
    const bytes = new Encoder({ useRecords: false, mapsAsObjects: false }).encode(new Map<unknown, unknown>([["op", "changes"], ["ts", 1], ["items", [new Map<unknown, unknown>([[1, 2]])]]]));
    expect(() => decodeCommand(bytes)).toThrow(InvalidCommandError);
  });

  test("stored results keep bytes as plain Uint8Array and keys exactly", () => {
    const r = decodeResult(encodeResult({ succeeded: true, results: [{ op: "get", key: "__proto__", value: new Uint8Array([1, 2]) }] })) as { results: { key: string; value: Uint8Array }[] };
    expect(r.results[0]!.key).toBe("__proto__");
    expect(r.results[0]!.value.constructor).toBe(Uint8Array);
  });

  test("property: any JSON either round-trips exactly or is refused for a lone surrogate", () => {
    fc.assert(
      fc.property(oddJson({ lone: true, maxDepth: 5 }), (data) => {
        if (hasLoneSurrogate(data)) {
          expect(() => encodeCommand(cmd(data))).toThrow(InvalidCommandError);
          return;
        }
        const back = decodeCommand(encodeCommand(cmd(data))) as ChangesCmd;
        expect(canonical(back.items[0]!.data)).toBe(canonical(data));
      }),
      fuzzParams(500),
    );
  });
});

import { describe, expect, test } from "bun:test";
import {
  decodeCommand,
  encodeCommand,
  InvalidCommandError,
  type Command,
} from "../../src/statemachine/commands.ts";
import { BATCH_ITEMS_MAX, JSON_DEPTH_MAX, KEY_BYTES_MAX, VALUE_BYTES_MAX } from "../../src/statemachine/limits.ts";
import { caught } from "../platform/testutil.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

function invalid(cmd: unknown): InvalidCommandError {
  const e = caught(() => encodeCommand(cmd as Command));
  expect(e).toBeInstanceOf(InvalidCommandError);
  return e as InvalidCommandError;
}

describe("commands", () => {
  test("every command round-trips through CBOR with plain Uint8Array values", () => {
    const cmds: Command[] = [
      { op: "changes", items: [{ data: { a: [1, 2.5, "x", null, true] }, tags: ["t"] }], ts: 1, idem: "k" },
      { op: "put", key: "k", value: new Uint8Array([1, 2]), contentType: "a/b", ifMatch: 3, ts: 2 },
      { op: "put", key: "k", value: new Uint8Array(), contentType: "a/b", ifNoneMatch: true, ts: 2 },
      { op: "del", key: "k", ifMatch: 0, ts: 3 },
      {
        op: "txn",
        compare: [{ key: "k", target: "value", op: "<", value: bytes("v") }, { key: "k", target: "exists", op: "=", value: true }],
        success: [{ op: "put", key: "k", value: bytes("w"), contentType: "text/plain" }, { op: "get", key: "k" }],
        failure: [{ op: "del", key: "k" }],
        ts: 4,
      },
    ];
    for (const c of cmds) {
      const back = decodeCommand(encodeCommand(c));
      expect(back).toEqual(c);
      if (back.op === "put") expect(back.value.constructor).toBe(Uint8Array);
    }
  });

  test("unknown fields are dropped; a missing tags list is empty", () => {
    const back = decodeCommand(encodeCommand({ op: "changes", items: [{ data: 1 }], ts: 1, extra: true } as never));
    expect(back).toEqual({ op: "changes", items: [{ data: 1, tags: [] }], ts: 1 });
  });

  test("keys: empty, over KEY_BYTES_MAX (counted in UTF-8), or with an unpaired surrogate are refused", () => {
    const put = (key: string) => ({ op: "put", key, value: new Uint8Array(), contentType: "a/b", ts: 1 });
    expect(invalid(put("")).tooLarge).toBe(false);
    expect(invalid(put("é".repeat(KEY_BYTES_MAX / 2 + 1))).tooLarge).toBe(true);
    encodeCommand(put("é".repeat(KEY_BYTES_MAX / 2)) as Command);
    invalid(put("a\uD800b"));
    encodeCommand(put("😀") as Command);
  });

  test("a value over VALUE_BYTES_MAX is too large", () => {
    const e = invalid({ op: "put", key: "k", value: new Uint8Array(VALUE_BYTES_MAX + 1), contentType: "a/b", ts: 1 });
    expect(e.tooLarge).toBe(true);
    expect(e.message).toContain(String(VALUE_BYTES_MAX));
  });

  test("change data must be JSON, not too deep; batches are bounded and non-empty", () => {
    const ch = (data: unknown) => ({ op: "changes", items: [{ data, tags: [] }], ts: 1 });
    invalid(ch(new Uint8Array(1)));
    invalid(ch({ a: Number.NaN }));
    invalid(ch({ a: undefined }));
    let deep: unknown = 1;
    for (let i = 0; i <= JSON_DEPTH_MAX + 1; i++) deep = [deep];
    invalid(ch(deep));
    invalid({ op: "changes", items: [], ts: 1 });
    expect(invalid({ op: "changes", items: Array(BATCH_ITEMS_MAX + 1).fill({ data: 1, tags: [] }), ts: 1 }).tooLarge).toBe(true);
    invalid({ op: "changes", items: [{ data: 1, tags: [""] }], ts: 1 });
  });

  test("shape errors: unknown op, bad ts, misplaced options, bad compares", () => {
    invalid({ op: "drop", ts: 1 });
    invalid({ op: "del", key: "k", ts: -1 });
    invalid({ op: "del", key: "k", ts: 1.5 });
    invalid({ op: "del", key: "k", ifNoneMatch: true, ts: 1 });
    const txn = (compare: unknown) => ({ op: "txn", compare: [compare], success: [], failure: [], ts: 1 });
    invalid(txn({ key: "k", target: "exists", op: "<", value: true }));
    invalid(txn({ key: "k", target: "version", op: "=", value: "1" }));
    invalid(txn({ key: "k", target: "value", op: "=", value: "text" }));
    invalid(txn({ key: "k", target: "mod", op: "=", value: 1 }));
    invalid({ op: "txn", compare: [], success: [{ op: "watch", key: "k" }], failure: [], ts: 1 });
  });

  test("bytes that are not CBOR are an InvalidCommandError", () => {
    expect(caught(() => decodeCommand(new Uint8Array([0xff, 0xff])))).toBeInstanceOf(InvalidCommandError);
    expect(caught(() => decodeCommand(new Uint8Array([0x18])))).toBeInstanceOf(InvalidCommandError);
  });
});

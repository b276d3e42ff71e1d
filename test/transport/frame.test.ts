import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  BadFrameError,
  FRAME_DEPTH_MAX,
  FrameDecoder,
  FrameTooLargeError,
  KEEPALIVE,
  KEEPALIVE_FRAME,
  decodeBody,
  encodeFrame,
} from "../../src/transport/frame.ts";

function decodeAll(dec: FrameDecoder, chunks: Uint8Array[]): unknown[] {
  const out: unknown[] = [];
  for (const c of chunks) for (const v of dec.feed(c)) out.push(v);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Splits `bytes` at the given cut points (any order, duplicates allowed). */
function cut(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const sorted = [...new Set(points.map((p) => p % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of [...sorted, bytes.byteLength]) {
    chunks.push(bytes.slice(from, p));
    from = p;
  }
  return chunks;
}

/** Plain data as the transport carries it (no undefined inside arrays: CBOR keeps it, but toEqual is picky). */
const plainValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.string(),
    fc.integer(),
    // cbor-x writes -0 as the integer 0; nothing in cairn relies on the sign of zero.
    fc.double({ noNaN: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== "__proto__"), tie("value"), { maxKeys: 5 }),
  ),
})).value;

/** toEqual treats a Buffer and a Uint8Array with the same bytes as different: normalise. */
function normalise(v: unknown): unknown {
  if (v instanceof Uint8Array) return Array.from(v);
  if (Array.isArray(v)) return v.map(normalise);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  return v;
}

describe("frames", () => {
  test("random chunking gives back the same values", () => {
    fc.assert(
      fc.property(fc.array(plainValue, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (values, points) => {
        const bytes = concat(values.map((v) => encodeFrame(v)));
        const got = decodeAll(new FrameDecoder(), cut(bytes, points));
        expect(normalise(got)).toEqual(normalise(values));
      }),
      { numRuns: 300 },
    );
  });

  test("a message with byte strings keeps them as Uint8Array", () => {
    const msg = { t: "raft", m: { type: "app", entries: [{ index: 2 ** 40, data: new Uint8Array([1, 2, 3]) }] } };
    const [got] = decodeAll(new FrameDecoder(), [encodeFrame(msg)]) as [typeof msg];
    const data = got.m.entries[0]?.data;
    expect(data).toBeInstanceOf(Uint8Array);
    expect(Array.from(data ?? [])).toEqual([1, 2, 3]);
    expect(got.m.entries[0]?.index).toBe(2 ** 40);
  });

  test("a string-heavy frame decodes (the native cbor-extract addon, which crashes Bun, is not loaded)", () => {
    const value = { items: Array.from({ length: 200 }, (_, i) => ({ name: "x".repeat(i % 40), tag: `tag${i}`, s: `héllo wörld ${i}` })) };
    const dec = new FrameDecoder();
    for (let i = 0; i < 100; i++) expect(decodeAll(dec, [encodeFrame(value)])).toEqual([value]);
  });

  test("a frame one byte over frameBytesMax is refused from its header", () => {
    const frame = encodeFrame("x".repeat(100));
    const bodyBytes = frame.byteLength - 4;
    const dec = new FrameDecoder({ frameBytesMax: bodyBytes - 1 });
    // Only the header arrives: the decoder must refuse without waiting for the body.
    expect(() => decodeAll(dec, [frame.subarray(0, 4)])).toThrow(FrameTooLargeError);
    // Poisoned: later chunks throw the same error.
    expect(() => decodeAll(dec, [frame.subarray(4)])).toThrow(FrameTooLargeError);
    // Exactly at the limit is fine.
    expect(decodeAll(new FrameDecoder({ frameBytesMax: bodyBytes }), [frame])).toEqual(["x".repeat(100)]);
  });

  test("encodeFrame refuses a body over frameBytesMax", () => {
    let err: unknown;
    try {
      encodeFrame(new Uint8Array(1000), 100);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect((err as FrameTooLargeError).frameBytesMax).toBe(100);
  });

  test("undecodable bytes are a BadFrameError, after the good frames before them", () => {
    const good = encodeFrame({ ok: 1 });
    const garbage = new Uint8Array([0, 0, 0, 2, 0xff, 0xff]);
    const dec = new FrameDecoder();
    const got: unknown[] = [];
    let err: unknown;
    try {
      for (const v of dec.feed(concat([good, garbage]))) got.push(v);
    } catch (e) {
      err = e;
    }
    expect(got).toEqual([{ ok: 1 }]);
    expect(err).toBeInstanceOf(BadFrameError);
  });

  test("trailing bytes inside a frame body are a BadFrameError", () => {
    // Body = two CBOR items (1, 2): the length prefix says 2 bytes, both valid, but only one value is allowed.
    expect(() => decodeBody(new Uint8Array([0x01, 0x02]))).toThrow(BadFrameError);
  });

  test("an empty frame body is the transport's keepalive, not a payload", () => {
    expect(decodeAll(new FrameDecoder(), [new Uint8Array([0, 0, 0, 0]), KEEPALIVE_FRAME])).toEqual([KEEPALIVE, KEEPALIVE]);
    expect(() => decodeBody(new Uint8Array(0))).toThrow(BadFrameError);
  });

  test("CBOR tags that make non-plain values are refused", () => {
    expect(() => decodeBody(new Uint8Array([0xc1, 0x01]))).toThrow(BadFrameError); // tag 1: Date
    expect(() => decodeBody(new Uint8Array([0xd8, 0x99, 0x01]))).toThrow(BadFrameError); // unknown tag 153
    expect(() => decodeBody(new Uint8Array([0x1b, 0xff, 0, 0, 0, 0, 0, 0, 0]))).toThrow(BadFrameError); // uint64 → bigint
    // tag 27 "generic object" would construct an Error
    expect(() => decodeBody(new Uint8Array([0xd8, 0x1b, 0x82, 0x65, 0x45, 0x72, 0x72, 0x6f, 0x72, 0x61, 0x78]))).toThrow(BadFrameError);
  });

  test("values nested deeper than FRAME_DEPTH_MAX are refused", () => {
    let deep: unknown = 1;
    for (let i = 0; i < FRAME_DEPTH_MAX + 1; i++) deep = [deep];
    expect(() => decodeAll(new FrameDecoder(), [encodeFrame(deep)])).toThrow(BadFrameError);
    let ok: unknown = 1;
    for (let i = 0; i < FRAME_DEPTH_MAX; i++) ok = [ok];
    expect(decodeAll(new FrameDecoder(), [encodeFrame(ok)])).toEqual([ok]);
  });

  test("a __proto__ key cannot change an object's prototype", () => {
    const [got] = decodeAll(new FrameDecoder(), [encodeFrame(JSON.parse('{"__proto__": {"polluted": true}}'))]);
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });

  test("frameBytesMax must be a positive whole number", () => {
    expect(() => new FrameDecoder({ frameBytesMax: 0 })).toThrow(RangeError);
    expect(() => new FrameDecoder({ frameBytesMax: 1.5 })).toThrow(RangeError);
  });
});

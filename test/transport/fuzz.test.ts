/**
 * Fuzzing what a peer can send before and after the handshake: random and
 * mutated frames through FrameDecoder, the hello parser and check, and the
 * wire check of Raft messages. Each input either decodes or fails with the
 * typed error (BadFrameError, FrameTooLargeError, HandshakeError), never
 * anything else, and a failed decoder stays failed (the stream lost its
 * framing). CI runs a fixed seed; CAIRN_FUZZ_RUNS=100000 runs longer.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { messageProblem } from "../../src/node/wire.ts";
import { BadFrameError, FrameDecoder, FrameTooLargeError, encodeFrame } from "../../src/transport/frame.ts";
import { checkHello, HandshakeError, parseHello, PROTOCOL_VERSION } from "../../src/transport/hello.ts";
import { fuzzParams, fuzzTimeoutMs, ODD_KEYS, objectOf } from "../helpers/fuzz.ts";

const FRAME_MAX = 4096;

/** Splits bytes at the given points. */
function chunks(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const cuts = [...new Set(points.map((p) => p % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...cuts, bytes.byteLength]) {
    out.push(bytes.slice(from, p));
    from = p;
  }
  return out;
}

type Outcome = { values: unknown[]; error?: Error };

/** Feeds every chunk; the first error must be typed, and every later feed throws it again. */
function feedAll(parts: Uint8Array[]): Outcome {
  const dec = new FrameDecoder({ frameBytesMax: FRAME_MAX });
  const values: unknown[] = [];
  for (const p of parts) {
    try {
      for (const v of dec.feed(p)) values.push(v);
    } catch (e) {
      expect(e instanceof BadFrameError || e instanceof FrameTooLargeError).toBe(true);
      expect(() => [...dec.feed(new Uint8Array([0, 0, 0, 1, 0]))]).toThrow(e as Error);
      return { values, error: e as Error };
    }
  }
  expect(dec.pendingBytes).toBeLessThanOrEqual(FRAME_MAX + 4 + Math.max(0, ...parts.map((p) => p.byteLength)));
  return { values };
}

/** A Raft message as peers send it, with odd field values mixed in. */
const raftMessage = fc.record({
  t: fc.constant("raft"),
  m: fc.record({
    type: fc.constantFrom("app", "appResp", "vote", "heartbeat", "snap", "bogus"),
    from: fc.constantFrom("n1", "n2", ""),
    to: fc.constantFrom("n1", "n2"),
    cluster: fc.constantFrom("c", ""),
    context: fc.string({ maxLength: 4 }),
    term: fc.oneof(fc.nat(), fc.constant(-1), fc.constant(2 ** 60)),
    index: fc.nat(),
    logTerm: fc.nat(),
    commit: fc.nat(),
    commitTerm: fc.nat(),
    rejectHint: fc.nat(),
    reject: fc.boolean(),
    entries: fc.array(
      fc.record({ index: fc.nat(), term: fc.nat(), kind: fc.constantFrom("normal", "conf", "x"), data: fc.uint8Array({ maxLength: 16 }) }),
      { maxLength: 3 },
    ),
  }),
});

/** Byte-level mutations: flip, overwrite with CBOR tag and length bytes, truncate, insert. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0xc0, 0xc1, 0xd8, 0xd9, 0x1c, 0x5b, 0x7f, 0x9f, 0xbf, 0xff, 0xfb, 0xf9)) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
);

type Mutation = { kind: string; at: number; byte?: number; bytes?: Uint8Array };

function mutate(bytes: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = bytes;
  for (const m of ms) {
    const at = b.byteLength === 0 ? 0 : m.at % b.byteLength;
    if (m.kind === "set" && b.byteLength > 0) {
      b = b.slice();
      b[at] = m.byte!;
    } else if (m.kind === "cut") b = b.slice(0, at);
    else if (m.kind === "insert") b = new Uint8Array([...b.slice(0, at), ...m.bytes!, ...b.slice(at)]);
  }
  return b;
}

/** A decoded value goes on to the checks a node runs; neither may throw anything untyped. */
function checkDecoded(v: unknown): void {
  const o = v as { t?: unknown; m?: unknown } | null;
  const problem = messageProblem(o?.m ?? v, "n1");
  expect(problem === null || typeof problem === "string").toBe(true);
  try {
    const h = parseHello(v);
    if ("from" in h) checkHello(h, { self: "n1", cluster: "c" });
  } catch (e) {
    expect(e).toBeInstanceOf(HandshakeError);
  }
}

describe("frame decoder fuzz", () => {
  test(
    "random bytes in random chunks: values or a typed error, never anything else",
    () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, points) => {
          const r = feedAll(chunks(bytes, points));
          r.values.forEach(checkDecoded);
        }),
        fuzzParams(400),
      );
    },
    fuzzTimeoutMs(400, 2),
  );

  test(
    "a random length header then random CBOR-ish bytes: values or a typed error",
    () => {
      const framed = fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.option(fc.integer({ min: 0, max: 2 ** 32 - 1 }))).map(([body, len]) => {
        const f = new Uint8Array(4 + body.byteLength);
        new DataView(f.buffer).setUint32(0, len ?? body.byteLength, false);
        f.set(body, 4);
        return f;
      });
      fc.assert(
        fc.property(fc.array(framed, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }), (frames, points) => {
          const all = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
          let at = 0;
          for (const f of frames) (all.set(f, at), (at += f.byteLength));
          feedAll(chunks(all, points)).values.forEach(checkDecoded);
        }),
        fuzzParams(400),
      );
    },
    fuzzTimeoutMs(400, 2),
  );

  test(
    "mutated valid Raft message frames: values or a typed error, and the wire check never throws",
    () => {
      fc.assert(
        fc.property(raftMessage, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 4 }), (msg, ms, points) => {
          const frame = mutate(encodeFrame(msg), ms);
          feedAll(chunks(frame, points)).values.forEach(checkDecoded);
        }),
        fuzzParams(400),
      );
    },
    fuzzTimeoutMs(400, 2),
  );

  test("an unmutated Raft message frame decodes to what was sent", () => {
    fc.assert(
      fc.property(raftMessage, (msg) => {
        const r = feedAll([encodeFrame(msg)]);
        expect(r.error).toBeUndefined();
        expect(JSON.stringify(r.values[0], (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v))).toBe(
          JSON.stringify(msg, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v)),
        );
      }),
      fuzzParams(100),
    );
  }, fuzzTimeoutMs(100, 1));
});

describe("hello fuzz", () => {
  const id = fc.oneof(fc.constantFrom("n1", "n2", "", "x".repeat(257), ...ODD_KEYS), fc.string({ maxLength: 8 }));
  const field = fc.oneof(id, fc.constant(null), fc.integer(), fc.boolean(), fc.constant(undefined), fc.array(fc.string(), { maxLength: 2 }), fc.uint8Array({ maxLength: 4 }));

  test(
    "parseHello of any value: a hello, a refusal or a HandshakeError",
    () => {
      fc.assert(
        fc.property(fc.oneof(fc.anything(), fc.record({ v: fc.oneof(fc.constant(PROTOCOL_VERSION), field), cluster: field, from: field, to: field, refused: fc.option(field) })), (v) => {
          try {
            const h = parseHello(v);
            expect(h.v).toBe(PROTOCOL_VERSION);
            if ("refused" in h) expect(h.refused.length).toBeLessThanOrEqual(1000);
            else for (const s of [h.from, h.to]) expect(typeof s === "string" && s.length > 0 && s.length <= 256).toBe(true);
          } catch (e) {
            expect(e).toBeInstanceOf(HandshakeError);
          }
        }),
        fuzzParams(500),
      );
    },
    fuzzTimeoutMs(500, 1),
  );

  test(
    "checkHello of a parsed hello against any expectation: passes only a hello that matches, else a HandshakeError",
    () => {
      const want = fc.record({ self: id, cluster: fc.option(id), from: fc.option(id, { nil: undefined }), certName: fc.option(fc.option(id), { nil: undefined }) });
      fc.assert(
        fc.property(fc.record({ cluster: fc.option(id), from: id, to: id }), want, (raw, w) => {
          let h;
          try {
            h = parseHello({ v: PROTOCOL_VERSION, ...raw });
          } catch (e) {
            expect(e).toBeInstanceOf(HandshakeError);
            return;
          }
          if (!("from" in h)) return;
          try {
            checkHello(h, w);
            expect(h.to).toBe(w.self);
            expect(h.from).not.toBe(w.self);
            if (w.from !== undefined) expect(h.from).toBe(w.from);
            if (w.certName !== undefined) expect(h.from).toBe(w.certName as string);
          } catch (e) {
            expect(e).toBeInstanceOf(HandshakeError);
          }
        }),
        fuzzParams(500),
      );
    },
    fuzzTimeoutMs(500, 1),
  );

  test("hellos with prototype keys as ids are handled as plain strings", () => {
    for (const k of ["__proto__", "constructor", "toString"]) {
      const h = parseHello(objectOf([["v", PROTOCOL_VERSION], ["cluster", null], ["from", k], ["to", "n1"]]));
      expect(h).toEqual({ v: PROTOCOL_VERSION, cluster: null, from: k, to: "n1" });
      expect(() => checkHello(h as never, { self: "n1", cluster: null })).not.toThrow();
    }
  });
});

/**
 * Length-prefixed CBOR frames: a 4-byte big-endian body length, then the CBOR
 * body. `frameBytesMax` bounds the body length; a receiver rejects an
 * oversized frame from its header alone, before buffering any of the body.
 *
 * Frames come from the network, so decoding is defensive: cbor-x also
 * understands many extension tags (dates, records, shared references, sets,
 * generic objects, typed arrays). The transport only carries plain data, so a
 * decoded value must consist of null/undefined, booleans, numbers, strings,
 * byte strings (Uint8Array), arrays and plain objects, nested at most
 * `FRAME_DEPTH_MAX` deep; anything else is a BadFrameError. The depth bound
 * also rules out cycles built with shared-reference tags.
 *
 * Pure code: no I/O, no timers.
 */
// Not the package root: "cbor-x" loads the native cbor-extract addon, which aborts Bun
// (crash while decoding string-heavy data, so any peer could kill the node) and makes
// Deno exit with an undefined V8 symbol. The subpaths are the same codec in pure JS.
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { assert } from "../util/assert.ts";

export const FRAME_HEADER_BYTES = 4;
export const FRAME_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** The header can express at most 2^32-1; keep the limit inside it. */
export const FRAME_BYTES_MAX_LIMIT = 0xffff_ffff;
/** Plain data nests shallowly (a Raft message is about 5 levels); 64 leaves room for payloads. */
export const FRAME_DEPTH_MAX = 64;

/** A frame's body is longer than `frameBytesMax` (sending or receiving). */
export class FrameTooLargeError extends Error {
  override name = "FrameTooLargeError";
  constructor(readonly frameBytes: number, readonly frameBytesMax: number) {
    super(`frame of ${frameBytes} bytes exceeds frameBytesMax ${frameBytesMax}: send smaller messages or raise frameBytesMax on every node`);
  }
}

/** A frame's body is not valid CBOR, has trailing bytes, or holds a value that is not plain data. */
export class BadFrameError extends Error {
  override name = "BadFrameError";
  constructor(readonly reason: string) {
    super(`bad frame: ${reason}`);
  }
}

// Plain CBOR maps for objects (no cbor-x record extension), so any CBOR
// decoder can read the frames. copyBuffers: decoded byte strings are copies,
// so a small Entry.data never pins a whole socket chunk in memory.
const encoder = new Encoder({ useRecords: false, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true });

export function checkFrameBytesMax(frameBytesMax: number): void {
  if (!Number.isInteger(frameBytesMax) || frameBytesMax < 1 || frameBytesMax > FRAME_BYTES_MAX_LIMIT) {
    throw new RangeError(`frameBytesMax ${frameBytesMax} is invalid: use a whole number of bytes from 1 to ${FRAME_BYTES_MAX_LIMIT}`);
  }
}

/** Encodes `value` as one frame (header + body). Throws FrameTooLargeError when the body exceeds `frameBytesMax`. */
export function encodeFrame(value: unknown, frameBytesMax: number = FRAME_BYTES_MAX_DEFAULT): Uint8Array {
  const body = encoder.encode(value);
  if (body.byteLength > frameBytesMax) throw new FrameTooLargeError(body.byteLength, frameBytesMax);
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  new DataView(frame.buffer).setUint32(0, body.byteLength, false);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * A frame with an empty body (no CBOR value can encode to nothing, so no payload looks like it): the
 * transport's keepalive. FrameDecoder yields KEEPALIVE for it.
 */
export const KEEPALIVE = Symbol("keepalive");
export const KEEPALIVE_FRAME: Uint8Array = new Uint8Array(FRAME_HEADER_BYTES);

/** Decodes one frame body. Throws BadFrameError. */
export function decodeBody(body: Uint8Array): unknown {
  let value: unknown;
  try {
    value = decoder.decode(body);
  } catch (e) {
    // cbor-x throws plain Errors (and RangeError on deep nesting): all mean "not a CBOR value".
    throw new BadFrameError(`body of ${body.byteLength} bytes is not CBOR (${(e as Error).message})`);
  }
  checkPlain(value, 0);
  return value;
}

function checkPlain(v: unknown, depth: number): void {
  if (depth > FRAME_DEPTH_MAX) throw new BadFrameError(`value nests deeper than ${FRAME_DEPTH_MAX} levels`);
  switch (typeof v) {
    case "string":
    case "number":
    case "boolean":
    case "undefined":
      return;
    case "object":
      break;
    default:
      throw new BadFrameError(`value of type ${typeof v} is not plain data`);
  }
  if (v === null || v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    for (const x of v) checkPlain(x, depth + 1);
    return;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    const name = (v as { constructor?: { name?: string } }).constructor?.name ?? "unknown";
    throw new BadFrameError(`value of class ${name} is not plain data (an unsupported CBOR tag?)`);
  }
  for (const x of Object.values(v)) checkPlain(x, depth + 1);
}

/**
 * Turns a stream of chunks back into frame values. Feed it socket chunks in
 * order with `feed(chunk)` and iterate the result fully: it yields every
 * complete frame's value, and throws FrameTooLargeError or BadFrameError at
 * the first bad frame (values before it in the same chunk are yielded first).
 * After an error the decoder is poisoned: every later feed throws the same
 * error, since the stream has lost its framing.
 *
 * Memory: at most one partial frame is buffered, so at most frameBytesMax +
 * FRAME_HEADER_BYTES + one chunk.
 */
export class FrameDecoder {
  readonly frameBytesMax: number;
  private chunks: Uint8Array[] = [];
  private bufferedBytes = 0;
  /** Body length of the frame being read, or -1 while its header is still incomplete. */
  private bodyBytes = -1;
  private failure: Error | undefined;

  constructor(opts: { frameBytesMax?: number } = {}) {
    this.frameBytesMax = opts.frameBytesMax ?? FRAME_BYTES_MAX_DEFAULT;
    checkFrameBytesMax(this.frameBytesMax);
  }

  /** Bytes received but not yet part of a complete frame. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }

  /** Appends `chunk` now (eagerly) and returns the frames it completes. */
  feed(chunk: Uint8Array): Generator<unknown, void, undefined> {
    if (this.failure === undefined && chunk.byteLength > 0) {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.byteLength;
    }
    return this.drain();
  }

  private *drain(): Generator<unknown, void, undefined> {
    if (this.failure) throw this.failure;
    for (;;) {
      if (this.bodyBytes < 0) {
        if (this.bufferedBytes < FRAME_HEADER_BYTES) return;
        const header = this.take(FRAME_HEADER_BYTES);
        const length = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES).getUint32(0, false);
        if (length > this.frameBytesMax) this.fail(new FrameTooLargeError(length, this.frameBytesMax));
        this.bodyBytes = length;
      }
      if (this.bufferedBytes < this.bodyBytes) return;
      if (this.bodyBytes === 0) {
        this.bodyBytes = -1;
        yield KEEPALIVE;
        continue;
      }
      const body = this.take(this.bodyBytes);
      this.bodyBytes = -1;
      let value: unknown;
      try {
        value = decodeBody(body);
      } catch (e) {
        this.fail(e as Error);
      }
      yield value;
    }
  }

  private fail(e: Error): never {
    this.failure = e;
    this.chunks = [];
    this.bufferedBytes = 0;
    throw e;
  }

  /** Removes and returns the first n buffered bytes; copies only when they span chunks. */
  private take(n: number): Uint8Array {
    this.bufferedBytes -= n;
    const first = this.chunks[0];
    if (first !== undefined && first.byteLength >= n) {
      if (first.byteLength === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      assert(c !== undefined, () => `FrameDecoder.take(${n}): chunks ran out after ${filled} bytes`);
      const k = Math.min(c.byteLength, n - filled);
      out.set(c.subarray(0, k), filled);
      filled += k;
      if (k === c.byteLength) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/**
 * Checkpoint files are checked against the SHA-256 their manifest records
 * before anything uses them (served for download, restored, recovered from;
 * a follower checks a received one in transfer.ts): a flipped bit on disk
 * must not travel into another node's state machine.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { sha256File } from "./build.ts";

const READ_CHUNK_BYTES = 1 << 20;

export class ChecksumMismatchError extends Error {
  override name = "ChecksumMismatchError";
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`checkpoint file ${path} failed verification: its SHA-256 is ${actual}, expected ${expected}; it is damaged (or the checksum is not this file's) and is not used`);
  }
}

/** Throws ChecksumMismatchError unless the file's SHA-256 is `expected` (hex). Blocks: for the CLI. */
export function verifyFileSync(path: string, expected: string): void {
  const actual = sha256File(path);
  if (actual !== expected.toLowerCase()) throw new ChecksumMismatchError(path, expected, actual);
}

/** The same, reading in chunks without blocking the event loop (for a running node). */
export async function verifyFile(path: string, expected: string): Promise<void> {
  const h = createHash("sha256");
  const f = await open(path, "r");
  try {
    const buf = new Uint8Array(READ_CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await f.read(buf, 0, buf.length, null);
      if (bytesRead <= 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await f.close();
  }
  const actual = h.digest("hex");
  if (actual !== expected.toLowerCase()) throw new ChecksumMismatchError(path, expected, actual);
}

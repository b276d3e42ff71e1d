/**
 * A file as a web ReadableStream (for HTTP downloads), read in bounded
 * chunks on demand so a large checkpoint is never whole in memory. Plain
 * node:fs calls, which Bun and Deno both implement.
 */
import { closeSync, openSync, readSync } from "node:fs";

const CHUNK_BYTES = 1 << 20;

export function fileStream(path: string): ReadableStream<Uint8Array> {
  let fd: number | null = openSync(path, "r");
  let pos = 0;
  const close = () => {
    if (fd !== null) closeSync(fd);
    fd = null;
  };
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (fd === null) return;
      const buf = new Uint8Array(CHUNK_BYTES);
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) {
        close();
        controller.close();
        return;
      }
      pos += n;
      controller.enqueue(buf.subarray(0, n));
    },
    cancel: close,
  });
}

/**
 * The checkpointer's worker thread: builds one checkpoint file per request,
 * off the Raft loop's thread. Messages: {id, req: BuildRequest} in,
 * {id, ok: true, result} or {id, ok: false, error} out.
 */
import { buildCheckpointFile, type BuildRequest } from "./build.ts";

declare const self: { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown): void };

self.onmessage = (e: MessageEvent) => {
  const { id, req } = e.data as { id: number; req: BuildRequest };
  try {
    self.postMessage({ id, ok: true, result: buildCheckpointFile(req) });
  } catch (err) {
    self.postMessage({ id, ok: false, error: { name: (err as Error).name, message: (err as Error).message } });
  }
};

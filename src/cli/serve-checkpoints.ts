/**
 * `cairn serve` options for checkpoints, feed retention and checkpoint
 * transfer: parsed here so serve.ts only spreads them in.
 */
import type { CheckpointPolicy } from "../checkpoint/checkpointer.ts";
import { DEFAULT_POLICY } from "../checkpoint/checkpointer.ts";
import { TRANSFER_DEFAULTS } from "../checkpoint/transfer.ts";
import type { CairnNodeOptions } from "../node/node.ts";
import { intOption, UsageError, type Options } from "./args.ts";

export const CHECKPOINT_OPTIONS = {
  "checkpoint-every": { type: "string" },
  "checkpoint-interval": { type: "string" },
  "checkpoint-log-bytes": { type: "string" },
  "checkpoint-keep": { type: "string" },
  "checkpoint-trailing": { type: "string" },
  "checkpoint-build-rate": { type: "string" },
  "checkpoint-disk-share": { type: "string" },
  "compact-every": { type: "string" },
  "retain-changes": { type: "string" },
  "retain-age": { type: "string" },
  "transfer-chunk-bytes": { type: "string" },
  "transfer-window": { type: "string" },
  "transfer-rate": { type: "string" },
} as const satisfies Options;

export const CHECKPOINT_USAGE = `Checkpoints, log compaction and feed retention:
  The Raft log is compacted up to the applied index without copying the state
  (the state database is durable with its applied index); a checkpoint file (a
  full copy) is built when a follower behind the compacted log needs one, when
  asked (POST /admin/checkpoint, cairn checkpoint create, cairn backup), when
  feed retention waits for one, and by the policy below.
  --compact-every N             compact the log once it holds N entries beyond the
                                trailing ones (default ${DEFAULT_POLICY.compactEveryEntries}; 0: not by count)
  --checkpoint-trailing K       log entries kept below the applied index, so a
                                slightly lagging follower needs no checkpoint (default ${DEFAULT_POLICY.trailingEntries})
  --checkpoint-log-bytes SIZE   and compact when the stored log passes SIZE, the trailing
                                entries too (default 256MiB; 0: not by size)
  --checkpoint-every N          build a checkpoint every N applied entries
                                (default ${DEFAULT_POLICY.everyEntries}; 0: not by count)
  --checkpoint-interval DUR     and when the newest is older than DUR and entries
                                were applied since (default 10m; 0: not by age)
  --checkpoint-disk-share F     builds the node starts on its own (the two above, feed
                                retention) take at most this share of the time: after a
                                build of T the next waits T*(1/F-1) (default ${DEFAULT_POLICY.diskShare}; 1: unpaced)
  --checkpoint-keep M           checkpoints kept on disk (default ${DEFAULT_POLICY.keep})
  --checkpoint-build-rate SIZE  write rate of a build per second, so that it does not
                                stall the node's own commits on the disk (default 64MiB; 0: unpaced)
  --retain-changes N            the change feed keeps at least the newest N changes
                                (default 1000000)
  --retain-age DUR              and every change younger than DUR (default 7d); older
                                changes covered by a checkpoint are trimmed, and a
                                reader below the feed gets 410 with the checkpoint
  --transfer-chunk-bytes SIZE   chunk size of a checkpoint sent to a lagging node
                                (default 1MiB)
  --transfer-window N           chunks in flight before an acknowledgement (default ${TRANSFER_DEFAULTS.windowChunks})
  --transfer-rate SIZE          at most SIZE per second to one node (default ${TRANSFER_DEFAULTS.bytesPerSec ? `${TRANSFER_DEFAULTS.bytesPerSec >> 20}MiB` : "0"}; 0: no limit)
DUR is a number with a unit: 500ms, 30s, 10m, 2h, 7d. SIZE is bytes, or with
a unit: 64KiB, 1MiB, 1GiB (K, M, G are also binary).`;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30s" -> 30000. A bare 0 is allowed (meaning "off" or "no age limit", as the option says). */
export function parseDuration(v: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (v.trim() === "0") return 0;
  if (!m) throw new UsageError(`--${name} wants a duration such as 500ms, 30s, 10m, 2h or 7d, got "${v}"`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, kib: 1024, m: 1 << 20, mib: 1 << 20, g: 1 << 30, gib: 1 << 30 };

/** "64KiB" -> 65536. */
export function parseSize(v: string, name: string, range: { min: number; max: number }): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < range.min || n > range.max) {
    throw new UsageError(`--${name} wants a size from ${range.min} to ${range.max} bytes (e.g. 64KiB, 1MiB), got "${v}"`);
  }
  return n;
}

/** "0.05" -> 0.05: a share above 0, at most 1. */
export function shareOption(v: string, name: string): number {
  const n = Number(v.trim());
  if (v.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1) throw new UsageError(`--${name} wants a share above 0 and at most 1 (e.g. 0.05), got "${v}"`);
  return n;
}

type Values = { [K in keyof typeof CHECKPOINT_OPTIONS]?: string };

/** The node options the flags ask for (only what was given: the node's defaults hold otherwise). */
export function checkpointNodeOptions(v: Values): Pick<CairnNodeOptions, "checkpoints" | "retention" | "transfer"> {
  const big = { min: 0, max: 1e12 };
  const checkpoints: Partial<CheckpointPolicy> = {
    ...(v["checkpoint-every"] !== undefined && { everyEntries: intOption(v["checkpoint-every"], "checkpoint-every", 0, big) }),
    ...(v["checkpoint-interval"] !== undefined && { everyMs: parseDuration(v["checkpoint-interval"], "checkpoint-interval") }),
    ...(v["checkpoint-log-bytes"] !== undefined && { logBytesMax: parseSize(v["checkpoint-log-bytes"], "checkpoint-log-bytes", big) }),
    ...(v["checkpoint-keep"] !== undefined && { keep: intOption(v["checkpoint-keep"], "checkpoint-keep", 0, { min: 1, max: 1000 }) }),
    ...(v["checkpoint-trailing"] !== undefined && { trailingEntries: intOption(v["checkpoint-trailing"], "checkpoint-trailing", 0, big) }),
    ...(v["checkpoint-build-rate"] !== undefined && { buildBytesPerSec: parseSize(v["checkpoint-build-rate"], "checkpoint-build-rate", big) }),
    ...(v["checkpoint-disk-share"] !== undefined && { diskShare: shareOption(v["checkpoint-disk-share"], "checkpoint-disk-share") }),
    ...(v["compact-every"] !== undefined && { compactEveryEntries: intOption(v["compact-every"], "compact-every", 0, big) }),
  };
  const retention = {
    ...(v["retain-changes"] !== undefined && { keepEntries: intOption(v["retain-changes"], "retain-changes", 0, big) }),
    ...(v["retain-age"] !== undefined && { keepAgeMs: parseDuration(v["retain-age"], "retain-age") }),
  };
  const transfer = {
    // A chunk travels in one peer frame (16 MiB at most, with room for the envelope).
    ...(v["transfer-chunk-bytes"] !== undefined && { chunkBytes: parseSize(v["transfer-chunk-bytes"], "transfer-chunk-bytes", { min: 1024, max: 8 << 20 }) }),
    ...(v["transfer-window"] !== undefined && { windowChunks: intOption(v["transfer-window"], "transfer-window", 0, { min: 1, max: 64 }) }),
    ...(v["transfer-rate"] !== undefined && { bytesPerSec: parseSize(v["transfer-rate"], "transfer-rate", big) }),
  };
  return { checkpoints, retention, transfer };
}

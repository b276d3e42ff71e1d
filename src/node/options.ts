/** What a CairnNode is made from, and the bounds it keeps (node.ts wires them). */
import type { CheckpointPolicy } from "../checkpoint/checkpointer.ts";
import type { BuildRequest, BuildResult } from "../checkpoint/build.ts";
import type { ClusterConfig } from "../discovery/load.ts";
import type { ReadOnlyMode } from "../raft/index.ts";
import type { Fsm } from "../statemachine/fsm.ts";
import type { PeerTls } from "../transport/context.ts";
import type { Logger } from "../util/log.ts";
import type { TransferTuning } from "./snapshots.ts";

export interface CairnNodeOptions {
  readonly id: string;
  readonly dataDir: string;
  readonly config: ClusterConfig;
  readonly tls: PeerTls | "insecure";
  /** Certificate expiry (src/transport/tlswatch.ts): its problems go into /status, its gauges into /metrics. */
  readonly tlsHealth?: { problems(): string[]; metricsText(): string };
  readonly logger: Logger;
  /** Raft's tick; default heartbeatMs / 2. */
  readonly tickMs?: number;
  /** A leader whose event loop stalls longer than this steps down; default electionMs. */
  readonly stallMs?: number;
  readonly readOnly?: ReadOnlyMode;
  readonly proposeTimeoutMs?: number;
  readonly readTimeoutMs?: number;
  readonly synchronous?: "FULL" | "NORMAL";
  /**
   * The leader sends its appends before its own fsync and counts itself toward the commit only
   * once that write is durable (thesis §10.2.1; driver.ts parallelAppends). Default true.
   */
  readonly parallelAppends?: boolean;
  /**
   * Log writes whose fsync may be pending at once (driver.ts writesInFlightMax; the WAL is synced
   * off the event loop, storage/walsync.ts). Default WRITES_IN_FLIGHT_MAX_DEFAULT.
   */
  readonly writesInFlightMax?: number;
  /** Test only: a faults file for the transport's fault hook (CAIRN_TEST_FAULTS; see transport/faults.ts). */
  readonly testFaultsFile?: string;
  /**
   * Called on the leader before each write is proposed (forwarded writes included, once, here):
   * null lets it through at once; a promise delays it until it settles, and a rejection refuses it
   * (pre-commit validators, src/api/validators.ts). Awaited outside the Raft loop.
   */
  readonly beforePropose?: (bytes: Uint8Array) => Promise<void> | null;
  /** Where the peer transport listens; default the node's `peer` address in the file. */
  readonly peerListen?: { readonly host: string; readonly port: number };
  readonly checkpoints?: Partial<CheckpointPolicy>;
  /**
   * An embedder's own deterministic state machine, in place of cairn's change
   * feed and key-value space. Propose with proposeData(); the HTTP API's feed
   * and key-value routes need the default.
   */
  readonly fsm?: Fsm;
  /** How checkpoints are built; default a worker thread. */
  readonly checkpointRunner?: (req: BuildRequest) => Promise<BuildResult>;
  /** Change-feed retention: a change is trimmed only when it is beyond both limits and covered by a checkpoint. */
  readonly retention?: { readonly keepEntries?: number; readonly keepAgeMs?: number };
  /**
   * Called once when the node hit an error it cannot go on after (a database
   * error other than a full disk, a failed invariant in the loop): the node
   * has stopped serving; the embedder should end the process (serve exits 1).
   */
  readonly onFatal?: (err: Error) => void;
  /** Checkpoint transfer tuning (tests use small chunks). */
  readonly transfer?: TransferTuning;
}

/** The node's bounds (queues, tables, retries) and periods. */
export const LIMITS = {
  proposalsPendingMax: 100_000,
  readRoundsMax: 1024,
  readersPerRoundMax: 100_000,
  feedWaitersMax: 10_000,
  peerCallsMax: 10_000,
  readyRoundsPerTurn: 64,
  catchUpLagMax: 64,
  convergeEveryMs: 250,
  formerPeersMax: 256,
  probeEveryMs: 300,
  diskRetryMs: 1000,
  /** After a fatal error, the embedder is told within this long even if stopping hangs. */
  fatalStopMs: 3000,
  trimEveryMs: 10_000,
  retainEntries: 1_000_000,
  retainAgeMs: 7 * 24 * 3600_000,
  /** Leadership transfers waiting for the leader to change, at most. */
  transferWaitersMax: 1024,
};

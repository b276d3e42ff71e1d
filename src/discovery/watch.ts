/**
 * Hot reload of the cluster file.
 *
 * - The file's DIRECTORY is watched with node:fs `watch`, so both an atomic
 *   replace (write a temporary file, rename it over) and an in-place write
 *   are seen: a watch on the file itself would follow the old inode away.
 *   Events for other names in the directory are ignored.
 * - Polling is the fallback (network filesystems, containers with mounted
 *   config, a watcher that died): every pollMs the file is stat'ed and a
 *   change of size, mtime, ctime or inode triggers a check; every
 *   FULL_CHECK_EVERY_POLLS polls the content is checked regardless, which
 *   catches a same-size rewrite within one mtime tick. A dead watcher is
 *   re-created from the poll.
 * - Triggers are debounced: a check runs debounceMs after the last trigger
 *   (at most DEBOUNCE_WAIT_FACTOR × debounceMs after the first), so the
 *   several events of one save, or a write in progress, make one check.
 * - A check reads the file and compares a hash of its bytes with the last
 *   one seen; unchanged bytes do nothing. Changed bytes are parsed: an
 *   invalid file is logged (warn, one line: what is wrong, and that the last
 *   good version stays in force) once per distinct content and ignored; a
 *   valid one is emitted through onChange only if the resolved config
 *   differs from the current one (reformatting the JSON emits nothing).
 * - A valid file can still be refused by the caller's `vet` (things only the
 *   running node can judge: its TLS files exist, the cluster name is its
 *   own, the file still lists nodes): refused like an invalid file, the last
 *   good version stays. A vetted-out version is vetted again on every full
 *   check (the TLS file it names may appear), but logged once per problem.
 * - onProblem tells the caller (for /status) which version is being ignored,
 *   and null once the file is good again.
 * - Checks never overlap; a trigger during a check runs one more after it.
 *
 * Works under Bun and Deno (both implement node:fs watch, stat and readFile).
 */
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { Logger } from "../util/log.ts";
import { type BytesResult, type ClusterConfig, parseClusterBytes, readClusterBytes, readClusterBytesSync, sameClusterConfig, statSignature } from "./load.ts";
import { ClusterFileError } from "./errors.ts";

export const POLL_MS_DEFAULT = 1000;
export const DEBOUNCE_MS_DEFAULT = 100;
export const FULL_CHECK_EVERY_POLLS = 10;
export const DEBOUNCE_WAIT_FACTOR = 5;

export interface WatchOptions {
  readonly path: string;
  readonly pollMs?: number;
  readonly debounceMs?: number;
  readonly logger: Logger;
  /** False: poll only, no fs.watch (network filesystems where events are unreliable). Default true. */
  readonly fsWatch?: boolean;
  /** Called with each new valid config that differs from the current one. Errors it throws are logged. */
  readonly onChange: (config: ClusterConfig) => void;
  /**
   * The config the caller already loaded at start-up: the baseline that
   * changes are measured against. Without it the file is read synchronously
   * when the watch starts (and not emitted).
   */
  readonly initial?: ClusterConfig;
  /**
   * Problems that make a valid new version unusable by this node (empty: use it). It sees
   * the new config and the one in force. Not called for the version in force at start.
   */
  readonly vet?: (next: ClusterConfig, current: ClusterConfig | null) => readonly string[];
  /** The one-line reason the file on disk is being ignored, or null when it is in force again. */
  readonly onProblem?: (problem: string | null) => void;
}

export interface ClusterFileWatch {
  /** Stops watching and polling; no onChange after it returns. */
  close(): void;
  /** The last good config, or null if no valid version has been seen. */
  current(): ClusterConfig | null;
  /** Checks the file now (e.g. on SIGHUP); resolves when done. */
  reload(): Promise<void>;
}

export function watchClusterFile(opts: WatchOptions): ClusterFileWatch {
  const w = new Watcher(opts);
  w.start();
  return { close: () => w.close(), current: () => w.config, reload: () => w.check() };
}

type StatSig = string;

class Watcher {
  config: ClusterConfig | null;
  private readonly path: string;
  private readonly name: string;
  private readonly pollMs: number;
  private readonly debounceMs: number;
  private readonly log: Logger;
  private closed = false;
  private fsWatcher: FSWatcher | null = null;
  private pollTimer: ReturnType<typeof setInterval> | null = null;
  private debounceTimer: ReturnType<typeof setTimeout> | null = null;
  private debounceFirstMs = 0;
  private polls = 0;
  /** Hash of the last content checked, or the key of the last read problem. */
  private lastKey: string | null = null;
  private lastStat: StatSig | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private watchFailed = false;
  /** The message last logged for an ignored version (logged once each), or null. */
  private problem: string | null = null;

  constructor(private readonly opts: WatchOptions) {
    this.path = resolve(opts.path);
    this.name = basename(this.path);
    this.pollMs = Math.max(10, opts.pollMs ?? POLL_MS_DEFAULT);
    this.debounceMs = Math.max(0, opts.debounceMs ?? DEBOUNCE_MS_DEFAULT);
    this.log = opts.logger.with({ clusterFile: this.path });
    this.config = opts.initial ?? null;
  }

  start(): void {
    if (!this.opts.initial) this.baseline();
    if (this.opts.fsWatch !== false) this.startFsWatch();
    this.pollTimer = setInterval(() => void this.poll(), this.pollMs);
  }

  close(): void {
    this.closed = true;
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    if (this.debounceTimer !== null) clearTimeout(this.debounceTimer);
    this.pollTimer = this.debounceTimer = null;
    this.stopFsWatch();
  }

  /** The first read, synchronous: sets the baseline without emitting. */
  private baseline(): void {
    const read = readClusterBytesSync(this.path);
    this.lastStat = read.sig;
    this.lastKey = keyOf(read);
    const r = read.ok ? parseClusterBytes(read.bytes, this.path) : { ok: false as const, error: read.error };
    if (r.ok) this.config = r.config;
    else this.reportInvalid(r.error);
  }

  private startFsWatch(): void {
    if (this.closed || this.fsWatcher) return;
    try {
      const w = watch(dirname(this.path), { persistent: true }, (_event, filename) => {
        // Some platforms give no name; then any event in the directory counts.
        const f = filename == null ? null : String(filename);
        if (f === null || f === this.name) this.schedule();
      });
      w.on("error", (e: unknown) => this.watchDied(e));
      this.fsWatcher = w;
      if (this.watchFailed) this.log.info("watching the cluster file's directory again");
      this.watchFailed = false;
    } catch (e) {
      this.watchDied(e);
    }
  }

  private stopFsWatch(): void {
    const w = this.fsWatcher;
    this.fsWatcher = null;
    try {
      w?.close();
    } catch {
      // Closing a watcher whose directory is gone may throw; it is closed either way.
    }
  }

  private watchDied(e: unknown): void {
    this.stopFsWatch();
    if (!this.watchFailed && !this.closed) {
      this.log.warn(`cannot watch the cluster file's directory; polling every ${this.pollMs} ms instead`, { err: e });
    }
    this.watchFailed = true;
  }

  private async poll(): Promise<void> {
    if (this.closed) return;
    if (!this.fsWatcher && this.opts.fsWatch !== false) this.startFsWatch();
    this.polls++;
    if (this.polls % FULL_CHECK_EVERY_POLLS === 0) return this.schedule();
    const sig = await statSig(this.path);
    if (sig !== this.lastStat) this.schedule();
  }

  /** Debounce: run a check debounceMs after the last trigger, capped since the first. */
  private schedule(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.debounceTimer !== null) {
      if (now - this.debounceFirstMs >= DEBOUNCE_WAIT_FACTOR * this.debounceMs) return;
      clearTimeout(this.debounceTimer);
    } else {
      this.debounceFirstMs = now;
    }
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      void this.check();
    }, this.debounceMs);
  }

  /** Runs a check now, or once more after the one under way. */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = async () => {
      try {
        do {
          this.again = false;
          await this.checkOnce();
        } while (this.again && !this.closed);
      } finally {
        this.running = null;
      }
    };
    this.running = run();
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    if (this.closed) return;
    const read = await readClusterBytes(this.path);
    if (this.closed) return;
    this.lastStat = read.sig;
    const key = keyOf(read);
    if (key === this.lastKey) {
      this.log.debug("cluster file checked: unchanged since the last check");
      return;
    }
    this.lastKey = key;
    const r = read.ok ? parseClusterBytes(read.bytes, this.path) : { ok: false as const, error: read.error };
    if (!r.ok) return this.reportInvalid(r.error);
    if (this.config && sameClusterConfig(this.config, r.config)) {
      this.log.debug("cluster file rewritten with the same content");
      return this.clearProblem();
    }
    const vetoes = this.opts.vet?.(r.config, this.config) ?? [];
    if (vetoes.length > 0) {
      this.lastKey = null; // vetted again on the next check: what it depends on may change
      return this.reportInvalid(new ClusterFileError("refused", this.path, vetoes));
    }
    this.config = r.config;
    this.clearProblem();
    this.log.info("cluster file changed", { nodes: r.config.nodes.map((n) => n.id) });
    try {
      this.opts.onChange(r.config);
    } catch (e) {
      this.log.error("the cluster file change handler failed", { err: e });
    }
  }

  private reportInvalid(error: ClusterFileError): void {
    const kept = this.config ? "the last good version stays in force" : "no valid version has been loaded yet";
    const line = `${error.message}; ignored, ${kept}`;
    if (line === this.problem) return;
    this.problem = line;
    this.log.warn(line, { problems: error.problems });
    this.notify(line);
  }

  private clearProblem(): void {
    if (this.problem === null) return;
    this.problem = null;
    this.log.info("the cluster file is good again");
    this.notify(null);
  }

  private notify(problem: string | null): void {
    try {
      this.opts.onProblem?.(problem);
    } catch (e) {
      this.log.error("the cluster file problem handler failed", { err: e });
    }
  }
}

type ReadOutcome = BytesResult;

function keyOf(read: ReadOutcome): string {
  return read.ok ? `content:${hash(read.bytes)}` : `problem:${read.error.message}`;
}

async function statSig(path: string): Promise<StatSig | null> {
  try {
    return statSignature(await stat(path));
  } catch {
    return null;
  }
}

function hash(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

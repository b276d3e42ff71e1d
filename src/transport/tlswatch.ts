/**
 * Watches a running node's TLS files (CA, certificate, key) and hands a new
 * pair on when it checks out, so certificates rotate without a restart.
 *
 * - The files' directories are watched with node:fs `watch` (an atomic
 *   replace is a rename in the directory) and the files are stat'ed every
 *   pollMs as a fallback; a dead watcher is re-created from the poll.
 * - A change is checked debounceMs after the last event, so the renames of
 *   one rotation (key, then certificate) make one check. Checks never
 *   overlap.
 * - A check reads the three files (each at most PEM_BYTES_MAX); bytes equal
 *   to the pair in use do nothing. A pair that fails checkPair (does not
 *   parse, key not the certificate's, not signed by the CA, not for this
 *   node) is refused with one warn line per distinct content; the old pair
 *   stays in use. A good one goes to onChange.
 * - It also keeps the expiry dates of the pair in use for /status, /metrics
 *   and a log line at start and once a day.
 */
import { type FSWatcher, watch } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import type { Logger } from "../util/log.ts";
import { PEM_BYTES_MAX } from "./bundle.ts";
import type { PeerTls } from "./context.ts";
import { type CertExpiry, expiryMetrics, expiryProblems } from "./expiry.ts";
import { BadTlsPairError, checkPair, type PairFacts } from "./pair.ts";

export interface TlsPaths {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface TlsWatchOptions {
  readonly paths: TlsPaths;
  readonly nodeId: string;
  readonly logger: Logger;
  /** The pair in use, already read and checked at start. */
  readonly initial: PeerTls;
  readonly initialFacts: PairFacts;
  /** Called with each new good pair. Errors it throws are logged. */
  readonly onChange: (tls: PeerTls, facts: PairFacts) => void | Promise<void>;
  readonly pollMs?: number;
  readonly debounceMs?: number;
  /** How often the expiry is logged (default once a day). */
  readonly expiryLogMs?: number;
}

export const TLS_POLL_MS_DEFAULT = 1000;
export const TLS_DEBOUNCE_MS_DEFAULT = 200;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Reads the three files of a pair (bounded); throws BadTlsPairError naming the file that cannot be read. */
export async function readTlsFiles(paths: TlsPaths): Promise<PeerTls> {
  const read = async (what: string, p: string) => {
    try {
      const st = await stat(p);
      if (st.size > PEM_BYTES_MAX) throw new BadTlsPairError(`the TLS ${what} ${p} is ${st.size} bytes, over ${PEM_BYTES_MAX}: is it the right file?`);
      return await readFile(p, "utf8");
    } catch (e) {
      if (e instanceof BadTlsPairError) throw e;
      throw new BadTlsPairError(`cannot read the TLS ${what} ${p}: ${(e as Error).message}`);
    }
  };
  return { ca: await read("CA", paths.ca), cert: await read("certificate", paths.cert), key: await read("key", paths.key) };
}

export class TlsWatch {
  private tls: PeerTls;
  private facts: PairFacts;
  private readonly log: Logger;
  private readonly watchers: FSWatcher[] = [];
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private lastSig = "";
  private lastRefused = "";
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(private readonly opts: TlsWatchOptions) {
    this.tls = opts.initial;
    this.facts = opts.initialFacts;
    this.log = opts.logger.with({ component: "tls" });
  }

  start(): void {
    void this.statSig().then((s) => (this.lastSig = s));
    this.startFsWatch();
    this.timers.push(setInterval(() => void this.poll(), Math.max(10, this.opts.pollMs ?? TLS_POLL_MS_DEFAULT)));
    this.logExpiry();
    const daily = setInterval(() => this.logExpiry(), this.opts.expiryLogMs ?? DAY_MS);
    (daily as { unref?: () => void }).unref?.();
    this.timers.push(daily);
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.debounce);
    for (const w of this.watchers.splice(0)) w.close();
  }

  /** The certificates in use with their end dates. */
  certs(): CertExpiry[] {
    return [
      { kind: "cert", file: this.opts.paths.cert, notAfter: this.facts.certNotAfter },
      { kind: "ca", file: this.opts.paths.ca, notAfter: this.facts.caNotAfter },
    ];
  }

  problems(nowMs = Date.now()): string[] {
    return expiryProblems(this.certs(), nowMs);
  }

  metricsText(nowMs = Date.now()): string {
    return expiryMetrics(this.certs(), nowMs);
  }

  private logExpiry(): void {
    const problems = this.problems();
    for (const p of problems) this.log.warn(p);
    if (problems.length === 0) {
      this.log.info("TLS certificates valid", { serial: this.facts.serial, certNotAfter: this.facts.certNotAfter.toISOString(), caNotAfter: this.facts.caNotAfter.toISOString() });
    }
  }

  private startFsWatch(): void {
    const names = new Set(Object.values(this.opts.paths).map((p) => basename(p)));
    for (const dir of new Set(Object.values(this.opts.paths).map((p) => dirname(p)))) {
      try {
        const w = watch(dir, { persistent: false }, (_e, f) => {
          if (f == null || names.has(String(f))) this.schedule();
        });
        w.on("error", () => this.stopFsWatch());
        this.watchers.push(w);
      } catch {
        // No watch here (the directory is missing, or the platform has none): the poll still sees changes.
      }
    }
  }

  private stopFsWatch(): void {
    for (const w of this.watchers.splice(0)) {
      try {
        w.close();
      } catch {
        // Closed either way.
      }
    }
  }

  private async statSig(): Promise<string> {
    const parts: string[] = [];
    for (const p of Object.values(this.opts.paths)) {
      try {
        const st = await stat(p);
        parts.push(`${st.size}:${st.mtimeMs}:${st.ino}`);
      } catch {
        parts.push("missing");
      }
    }
    return parts.join("|");
  }

  private async poll(): Promise<void> {
    if (this.closed) return;
    if (this.watchers.length === 0) this.startFsWatch();
    const sig = await this.statSig();
    if (sig !== this.lastSig) this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.check(), this.opts.debounceMs ?? TLS_DEBOUNCE_MS_DEFAULT);
  }

  /** Checks the files now, or once more after the check under way. */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.checkOnce();
        } while (this.again && !this.closed);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    if (this.closed) return;
    this.lastSig = await this.statSig();
    let next: PeerTls;
    let facts: PairFacts;
    try {
      next = await readTlsFiles(this.opts.paths);
      if (next.ca === this.tls.ca && next.cert === this.tls.cert && next.key === this.tls.key) return;
      facts = await checkPair(next, this.opts.nodeId);
      if (facts.caSerial !== this.facts.caSerial) {
        throw new BadTlsPairError(`the CA certificate changed (serial ${facts.caSerial}, in use ${this.facts.caSerial}): rotating the CA is not supported while running`);
      }
    } catch (e) {
      if (!(e instanceof BadTlsPairError)) throw e;
      if (e.message !== this.lastRefused) this.log.warn(`refused the new TLS files: ${e.message}; the certificate in use stays (serial ${this.facts.serial})`, { cert: this.opts.paths.cert });
      this.lastRefused = e.message;
      return;
    }
    if (this.closed) return;
    this.lastRefused = "";
    const before = this.facts.serial;
    this.tls = next;
    this.facts = facts;
    this.log.info("TLS files changed: using the new certificate for new connections", { serial: facts.serial, previousSerial: before, certNotAfter: facts.certNotAfter.toISOString() });
    try {
      await this.opts.onChange(next, facts);
    } catch (e) {
      this.log.error("applying the new TLS certificate failed", { error: (e as Error).message });
    }
    this.logExpiry();
  }
}

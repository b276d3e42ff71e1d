/**
 * Reading the tokens file, and its hot reload: a revoked token must stop
 * working within a second, with no restart.
 *
 * - The file's directory is watched (fs.watch) so that an atomic replace
 *   (tmp + rename, what `cairn token` does) is seen at once; a poll every
 *   pollMs (250 ms) stats the file and re-reads it on any change of size,
 *   mtime, ctime or inode, and re-reads it regardless every
 *   FULL_READ_EVERY_POLLS polls (a same-size rewrite within one mtime tick).
 *   The poll alone meets the one-second promise where events do not arrive.
 * - A changed file is parsed; a bad one is logged (warn: the place, the
 *   problem, and that the last good tokens stay in force) once per distinct
 *   content and ignored. A missing file is a bad file too: deleting the file
 *   by mistake must not open the API, nor lock everyone out.
 */
import { createHash } from "node:crypto";
import { type FSWatcher, readFileSync, statSync, watch } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { Logger } from "../util/log.ts";
import { parseTokensBytes, TOKENS_FILE_BYTES_MAX, TokensFileError, type TokensParse, type TokenSet, tooLarge } from "./tokens.ts";

export const TOKENS_POLL_MS_DEFAULT = 250;
export const FULL_READ_EVERY_POLLS = 8;

function readError(path: string, e: unknown): TokensFileError {
  const code = (e as { code?: unknown } | null)?.code;
  const what =
    code === "ENOENT"
      ? "no such file; check the --tokens path (cairn init writes tokens.json beside cluster.json)"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied; make it readable by the user running cairn"
        : code === "EISDIR"
          ? "it is a directory, not a file"
          : e instanceof Error
            ? e.message
            : String(e);
  return new TokensFileError("read", path, [`cannot read it: ${what}${typeof code === "string" ? ` (${code})` : ""}`]);
}

/** Reads and checks the tokens file at `path` (for start-up). Never throws. */
export function loadTokensFileSync(path: string): TokensParse {
  const abs = resolve(path);
  try {
    const st = statSync(abs);
    if (st.isFile() && st.size > TOKENS_FILE_BYTES_MAX) return { ok: false, error: tooLarge(abs, st.size) };
    return parseTokensBytes(readFileSync(abs), abs);
  } catch (e) {
    return { ok: false, error: readError(abs, e) };
  }
}

async function loadTokensFile(abs: string): Promise<{ parse: TokensParse; key: string }> {
  try {
    const st = await stat(abs);
    if (st.isFile() && st.size > TOKENS_FILE_BYTES_MAX) {
      const error = tooLarge(abs, st.size);
      return { parse: { ok: false, error }, key: `problem:${error.message}` };
    }
    const bytes = await readFile(abs);
    return { parse: parseTokensBytes(bytes, abs), key: `content:${createHash("sha256").update(bytes).digest("hex")}` };
  } catch (e) {
    const error = readError(abs, e);
    return { parse: { ok: false, error }, key: `problem:${error.message}` };
  }
}

export interface TokensWatch {
  /** The last good tokens. */
  current(): TokenSet;
  /** Checks the file now; resolves when done. */
  reload(): Promise<void>;
  close(): void;
}

export interface TokensWatchOptions {
  readonly path: string;
  /** What the caller loaded at start (loadTokensFileSync). */
  readonly initial: TokenSet;
  readonly logger: Logger;
  readonly pollMs?: number;
  /** False: poll only (network filesystems where events are unreliable). Default true. */
  readonly fsWatch?: boolean;
}

export function watchTokensFile(opts: TokensWatchOptions): TokensWatch {
  const abs = resolve(opts.path);
  const name = basename(abs);
  const log = opts.logger.with({ tokensFile: abs });
  let tokens = opts.initial;
  let lastKey: string | null = null;
  let lastSig: string | null = sigSync(abs);
  let closed = false;
  let running: Promise<void> | null = null;
  let again = false;
  let polls = 0;
  let watcher: FSWatcher | null = null;

  const checkOnce = async () => {
    const { parse, key } = await loadTokensFile(abs);
    if (closed || key === lastKey) return;
    const first = lastKey === null;
    lastKey = key;
    if (!parse.ok) {
      log.warn(`${parse.error.message}; ignored, the last good tokens stay in force (${tokens.size} tokens)`, { problems: parse.error.problems });
      return;
    }
    const changed = JSON.stringify(parse.tokens.entries) !== JSON.stringify(tokens.entries);
    tokens = parse.tokens;
    if (changed || !first) log.info(`tokens file reloaded: ${tokens.size} tokens`, { names: tokens.entries.map((e) => e.name) });
  };
  const check = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await checkOnce();
        } while (again && !closed);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  const startWatch = () => {
    if (watcher || closed || opts.fsWatch === false) return;
    try {
      watcher = watch(dirname(abs), { persistent: false }, (_e, f) => {
        if (f == null || String(f) === name) void check();
      });
      watcher.on("error", () => {
        watcher?.close();
        watcher = null;
      });
    } catch {
      watcher = null; // the poll covers it
    }
  };
  const timer = setInterval(() => {
    if (closed) return;
    startWatch();
    polls++;
    void (async () => {
      const sig = await sigAsync(abs);
      if (sig !== lastSig || polls % FULL_READ_EVERY_POLLS === 0) {
        lastSig = sig;
        await check();
      }
    })();
  }, Math.max(10, opts.pollMs ?? TOKENS_POLL_MS_DEFAULT));
  startWatch();
  void check(); // the baseline key (content of the file the caller loaded)
  return {
    current: () => tokens,
    reload: check,
    close() {
      closed = true;
      clearInterval(timer);
      watcher?.close();
      watcher = null;
    },
  };
}

function sigOf(st: { size: number; mtimeMs: number; ctimeMs: number; ino: number }): string {
  return `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}`;
}

function sigSync(p: string): string | null {
  try {
    return sigOf(statSync(p));
  } catch {
    return null;
  }
}

async function sigAsync(p: string): Promise<string | null> {
  try {
    return sigOf(await stat(p));
  } catch {
    return null;
  }
}

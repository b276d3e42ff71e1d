/**
 * Structured logs: one JSON object a line on stderr, so an operator can grep
 * and jq them. Every line carries the fields bound to the logger (node id, and
 * where known term and index).
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

export function isLogLevel(s: string): s is LogLevel {
  return s in RANK;
}

export class Logger {
  constructor(
    private readonly opts: { level: LogLevel; fields?: LogFields; sink?: LogSink },
  ) {}

  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger {
    return new Logger({ ...this.opts, fields: { ...this.opts.fields, ...fields } });
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.opts.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.write("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write("error", msg, fields);
  }

  private write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const line = JSON.stringify(
      { ts: new Date().toISOString(), level, msg, ...this.opts.fields, ...fields },
      (_k, v) => (v instanceof Error ? { name: v.name, message: v.message } : typeof v === "bigint" ? v.toString() : v),
    );
    (this.opts.sink ?? defaultSink)(line);
  }
}

function defaultSink(line: string): void {
  // console.error is line-buffered and works the same under Bun and Deno.
  console.error(line);
}

/** A logger that keeps lines in memory, for tests. */
export function memoryLogger(level: LogLevel = "debug"): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger({ level, sink: (l) => lines.push(l) }), lines };
}

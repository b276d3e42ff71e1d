/**
 * Shared argument handling: parseArgs from node:util, with its errors turned
 * into messages that say which option was wrong and how to write it, as a
 * typed error (exit code 2). Runtime failures are CliError (exit code 1).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** The command line is wrong: unknown option, bad or missing value, wrong arguments. Exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The command was right but failed (a file it could not write, a node that refused). Exit code 1, no stack trace. */
export class CliError extends Error {
  override name = "CliError";
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** A value that starts with a dash but is a number (-5, -0.5): a value, not an option. */
const NEGATIVE_NUMBER = /^-\d/;

/**
 * `--opt -5` becomes `--opt=-5`, which parseArgs otherwise calls
 * "ambiguous"; `--opt --other` (a string option left without its value)
 * is refused by name.
 */
function joinValues(argv: string[], options: Options, usage: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return [...out, ...argv.slice(i)];
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    const next = argv[i + 1];
    if (name !== undefined && options[name]?.type === "string" && next !== undefined && next.startsWith("-")) {
      if (!NEGATIVE_NUMBER.test(next)) throw new UsageError(`--${name} needs a value, but ${JSON.stringify(next)} follows it: write --${name} VALUE (or --${name}=VALUE for a value that starts with a dash)\n\n${usage}`);
      out.push(`${a}=${next}`);
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

function optionName(message: string): string {
  return /'(-{1,2}[^' <]+)/.exec(message)?.[1] ?? "an option";
}

/** parseArgs's error as a sentence that names the option and what to do. */
function usageMessage(e: Error & { code?: string }, usage: string): string {
  const opt = optionName(e.message);
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${opt}: the options this command takes are below\n\n${usage}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(e.message)) return `${opt} is a switch and takes no value: write just ${opt}\n\n${usage}`;
      return `${opt} needs a value: write ${opt} VALUE\n\n${usage}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `${e.message}\n\n${usage}`;
    default:
      return `${e.message}\n\n${usage}`;
  }
}

export function parse<O extends Options>(argv: string[], options: O, usage: string) {
  const args = joinValues(argv, options, usage);
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(usageMessage(e as Error, usage));
  }
}

/** Refuses fewer than `min` or more than `max` positional arguments, naming the extra ones. */
export function expectArgs(positionals: readonly string[], range: { min: number; max: number }, usage: string): void {
  if (positionals.length > range.max) {
    const extra = positionals.slice(range.max).map((p) => JSON.stringify(p)).join(" ");
    const what = range.max === 0 ? "takes no arguments" : `takes at most ${range.max} argument${range.max === 1 ? "" : "s"}`;
    throw new UsageError(`unexpected argument${positionals.length - range.max === 1 ? "" : "s"} ${extra}: this command ${what} (quote a value with spaces)\n\n${usage}`);
  }
  if (positionals.length < range.min) {
    throw new UsageError(`missing argument${range.min - positionals.length === 1 ? "" : "s"}: this command needs ${range.min}, got ${positionals.length}\n\n${usage}`);
  }
}

export function intOption(v: string | undefined, name: string, fallback: number, range: { min: number; max: number }): number {
  if (v === undefined) return fallback;
  const n = /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < range.min || n > range.max) {
    throw new UsageError(`--${name} wants a whole number from ${range.min} to ${range.max}, got "${v}"`);
  }
  return n;
}

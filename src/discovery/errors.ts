/**
 * Expected failures of the cluster file and of finding this node in it, as
 * typed errors. Callers check them with `instanceof` and `kind`, never by
 * message text. Every message is one line that names the file, the place in
 * it, the offending value and what to do.
 */

export type ClusterFileErrorKind =
  | "read" // the file could not be read (missing, permissions, a directory)
  | "tooLarge" // over CLUSTER_FILE_BYTES_MAX
  | "encoding" // not UTF-8
  | "empty" // zero bytes or only whitespace (often a write in progress)
  | "syntax" // not JSON
  | "invalid" // JSON, but not a valid cluster file
  | "refused"; // a valid file this running node cannot use (its TLS files are missing, it names another cluster...)

export class ClusterFileError extends Error {
  override name = "ClusterFileError";
  /** Every problem found, one line each; `message` shows the first. */
  readonly problems: readonly string[];

  constructor(
    readonly kind: ClusterFileErrorKind,
    readonly path: string,
    problems: readonly string[],
    /** 1-based position of a syntax error, when known. */
    readonly position?: { readonly line: number; readonly column: number },
  ) {
    const first = problems[0] ?? "unknown problem";
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})` : "";
    super(`cluster file ${path}: ${first}${more}`);
    this.problems = problems.length > 0 ? problems : [first];
  }
}

/** Base class of the ways findSelf can fail. */
export class SelfError extends Error {
  override name = "SelfError";
}

/**
 * No entry of the cluster file is this node: `--id` names an id the file does
 * not have, or (without `--id`) no peer host is an address of this machine.
 * A caller that may wait for the file to be edited can keep retrying on reload.
 */
export class SelfNotFoundError extends SelfError {
  override name = "SelfNotFoundError";
  constructor(
    readonly reason: "unknownId" | "noMatch",
    message: string,
  ) {
    super(message);
  }
}

/** Several entries have peer addresses of this machine (e.g. all on 127.0.0.1). */
export class SelfAmbiguousError extends SelfError {
  override name = "SelfAmbiguousError";
  constructor(
    readonly candidates: readonly string[],
    message: string,
  ) {
    super(message);
  }
}

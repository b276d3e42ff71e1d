/**
 * Expected conditions of the storage layer, as typed errors (checked with
 * instanceof). A full disk is DiskFullError from src/platform/sqlite.ts,
 * re-exported here so callers of the store need one import.
 */
export { DbBusyError, DbError, DiskFullError } from "../platform/sqlite.ts";

/** The data directory was written by a newer cairn whose format this one cannot read. */
export class FormatVersionError extends Error {
  override name = "FormatVersionError";
  constructor(readonly path: string, readonly found: number, readonly supported: number) {
    super(
      `database ${path} has format version ${found}, but this cairn supports format versions up to ${supported}: ` +
        `run a cairn release that supports format ${found}, or restore a backup into an empty data directory`,
    );
  }
}

/** The file is a SQLite database but not one of cairn's (or its metadata is damaged). */
export class NotCairnDatabaseError extends Error {
  override name = "NotCairnDatabaseError";
  constructor(readonly path: string, readonly reason: string) {
    super(`database ${path} is not a cairn data file (${reason}): point --data at a cairn data directory or an empty one`);
  }
}

/**
 * The data directory belongs to another node or another cluster. Starting on
 * it would let a removed or wiped node rejoin with stale data, so the caller
 * must stop and tell the operator.
 */
export class IdentityMismatchError extends Error {
  override name = "IdentityMismatchError";
  constructor(
    readonly path: string,
    readonly what: "node" | "cluster",
    readonly stored: string,
    readonly expected: string,
  ) {
    super(
      `database ${path} belongs to ${what} ${JSON.stringify(stored)}, not ${JSON.stringify(expected)}: ` +
        `use the data directory of ${what} ${JSON.stringify(expected)}, or an empty one to join afresh`,
    );
  }
}

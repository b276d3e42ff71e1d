/**
 * The layout of the node's database file and its format version.
 *
 * One format version covers the whole file: the Raft tables here and the
 * cairn state machine's tables (src/statemachine/cairn.ts). Any change to
 * either bumps FORMAT_VERSION and adds a Migration below.
 *
 * A new file is created at version 1 and then migrated forward like any old
 * file, so there is exactly one path to the current layout and every
 * migration is exercised by every fresh database.
 */
import { assert } from "../util/assert.ts";
import type { Db } from "../platform/sqlite.ts";
import { FormatVersionError, NotCairnDatabaseError } from "./errors.ts";
import { existsSync, rmSync } from "node:fs";

export const FORMAT_VERSION = 1;

export interface Migration {
  /** Migrates a file at version `from` to `from + 1`. */
  readonly from: number;
  readonly describe: string;
  readonly up: (db: Db) => void;
}

/** Ordered by `from`. Empty while version 1 is the only format. */
export const MIGRATIONS: readonly Migration[] = [];

const EMPTY_CONF_JSON = JSON.stringify({ voters: [], votersOutgoing: [], learners: [], learnersNext: [] });

/**
 * Version 1. raft_state has exactly one row (id = 1).
 * log_start_index/term: the entry just before the first one in raft_log (the
 * compaction point), so term(firstIndex - 1) is always answerable.
 */
const SCHEMA_V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE raft_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  term INTEGER NOT NULL,
  vote TEXT NOT NULL,
  commit_index INTEGER NOT NULL,
  applied_index INTEGER NOT NULL,
  conf TEXT NOT NULL,
  snap_index INTEGER NOT NULL,
  snap_term INTEGER NOT NULL,
  snap_conf TEXT NOT NULL,
  log_start_index INTEGER NOT NULL,
  log_start_term INTEGER NOT NULL
);
INSERT INTO raft_state VALUES (1, 0, '', 0, 0, '${EMPTY_CONF_JSON}', 0, 0, '${EMPTY_CONF_JSON}', 0, 0);
CREATE TABLE raft_log (
  idx INTEGER PRIMARY KEY,
  term INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('normal', 'conf')),
  data BLOB NOT NULL,
  conf TEXT
);
`;

export interface SchemaOptions {
  /** Overridable so tests can exercise the migration path with made-up versions. */
  readonly current?: number;
  readonly migrations?: readonly Migration[];
  /** Copy the file to `<path>.v<N>.bak` before migrating it from version N. */
  readonly backupBeforeMigrate?: boolean;
}

export interface SchemaResult {
  /** The version the file had when opened (0 when it was new). */
  readonly foundVersion: number;
  readonly version: number;
}

/** Creates or migrates the schema; refuses files from a newer cairn. */
export function prepareSchema(db: Db, opts: SchemaOptions = {}): SchemaResult {
  const current = opts.current ?? FORMAT_VERSION;
  const found = readVersion(db);
  if (found > current) throw new FormatVersionError(db.path, found, current);
  if (found === 0) db.transaction(() => createV1(db));
  else if (found < current && opts.backupBeforeMigrate !== false) backup(db, found);
  for (let v = Math.max(found, 1); v < current; v++) runMigration(db, v, opts.migrations ?? MIGRATIONS);
  return { foundVersion: found, version: current };
}

export function readVersion(db: Db): number {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
  if (tables.length === 0) return 0;
  if (!tables.some((t) => t.name === "meta")) throw new NotCairnDatabaseError(db.path, "it has tables but no meta table");
  const row = db.prepare("SELECT value FROM meta WHERE key = 'format_version'").get();
  const v = row?.value;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new NotCairnDatabaseError(db.path, `format_version is ${JSON.stringify(v ?? null)}`);
  }
  return v;
}

function createV1(db: Db): void {
  db.exec(SCHEMA_V1);
  db.prepare("INSERT INTO meta (key, value) VALUES ('format_version', 1)").run();
}

function runMigration(db: Db, from: number, migrations: readonly Migration[]): void {
  const m = migrations.find((x) => x.from === from);
  assert(m, () => `no migration from format version ${from} to ${from + 1}`);
  // Each step is atomic: a crash leaves the file at `from` or `from + 1`.
  db.transaction(() => {
    m.up(db);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'format_version'").run(from + 1);
  });
}

/** VACUUM INTO writes a consistent, compacted copy; an old copy is replaced. */
function backup(db: Db, version: number): void {
  const target = `${db.path}.v${version}.bak`;
  if (existsSync(target)) rmSync(target);
  db.prepare("VACUUM INTO ?").run(target);
}

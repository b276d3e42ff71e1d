/**
 * The cairn state machine's tables. They are part of the file's format
 * version (src/storage/schema.ts): change them only with a version bump and
 * a migration there.
 *
 * feed_state: one row. last = the newest change index ever assigned (kept
 *   when trimming empties the feed, so indexes stay dense and never reused);
 *   first = the oldest retained index (last + 1 when empty); ts = the feed
 *   clock, max of all command timestamps, so change times never go back.
 * changes: the change feed. data and tags are JSON text.
 * change_tags: one row per (tag, change), for tag-filtered reads.
 * kv: version = the feed index of the write that last changed the key.
 * idem: results of commands with an idempotency key; seq orders them by
 *   application, which makes the count cap deterministic.
 */
export const CAIRN_TABLES = `
CREATE TABLE IF NOT EXISTS feed_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last INTEGER NOT NULL,
  first INTEGER NOT NULL,
  ts INTEGER NOT NULL
);
INSERT OR IGNORE INTO feed_state VALUES (1, 0, 1, 0);
CREATE TABLE IF NOT EXISTS changes (
  idx INTEGER PRIMARY KEY,
  term INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  data TEXT NOT NULL,
  tags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_ts ON changes (ts);
CREATE TABLE IF NOT EXISTS change_tags (
  tag TEXT NOT NULL,
  idx INTEGER NOT NULL,
  PRIMARY KEY (tag, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS change_tags_idx ON change_tags (idx);
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL,
  content_type TEXT NOT NULL,
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idem (
  seq INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  result BLOB NOT NULL,
  ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idem_ts ON idem (ts);
`;

/**
 * Every bound of the cairn state machine, in one place. Command limits are
 * checked both when a command is proposed (encodeCommand) and when it is
 * applied (decodeCommand), so a bad command never reaches the tables; query
 * limits cap what one read may return.
 */

/** A key is UTF-8, non-empty, at most this many bytes. */
export const KEY_BYTES_MAX = 1024;
/** One stored value. */
export const VALUE_BYTES_MAX = 1024 * 1024;
export const CONTENT_TYPE_BYTES_MAX = 256;
/** The JSON text of one change's data. */
export const CHANGE_DATA_BYTES_MAX = 1024 * 1024;
/** The changes of one `changes` command (one atomic batch). */
export const BATCH_ITEMS_MAX = 1000;
/** Sum of the JSON data of one batch, and of the values of one txn. */
export const COMMAND_BYTES_MAX = 4 * 1024 * 1024;
export const TAGS_PER_CHANGE_MAX = 16;
export const TAG_BYTES_MAX = 128;
/** Nesting depth of change data (deeper JSON is refused rather than recursed into). */
export const JSON_DEPTH_MAX = 64;
export const TXN_COMPARES_MAX = 64;
/** Operations in each branch of a txn. */
export const TXN_OPS_MAX = 128;
export const IDEM_KEY_BYTES_MAX = 256;

/** Idempotency keys are forgotten this long after (by command time) ... */
export const IDEM_TTL_MS = 24 * 60 * 60 * 1000;
/** ... or when more than this many are kept, oldest first. */
export const IDEM_COUNT_MAX = 100_000;

/** listChanges / list: rows per answer, by default and at most. */
export const LIST_LIMIT_DEFAULT = 100;
export const LIST_LIMIT_MAX = 1000;
/** An answer stops early (at least one row) once its data passes this many bytes. */
export const LIST_BYTES_MAX = 4 * 1024 * 1024;
/** Tags one feed query may filter on. */
export const QUERY_TAGS_MAX = 16;
/** trimFeed deletes at most this many changes per call, to keep one transaction short. */
export const TRIM_BATCH_MAX = 10_000;

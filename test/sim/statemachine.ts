/**
 * The simulator's state machine: cairn's real one (CairnFsm behind the real
 * Applier, the code the binary applies with) on an in-memory SQLite database
 * per node, so that state machine safety is checked on the real feed and
 * key-value tables rather than on a fake.
 *
 * Cheap per-step check: a running hash of every feed row a node's applies
 * produced (and of the results they returned), recorded at the index each
 * apply batch ends at. The same rows in the same order give the same hash
 * however the entries were split into batches, so any two nodes at the same
 * applied index must agree. At the end of a seed the whole state (every
 * state-machine table) is compared between nodes at the same index.
 *
 * Checkpoints: a snapshot is every state-machine table's rows at the
 * snapshot's index (what the binary's checkpoint file holds, minus the Raft
 * tables), installed on a lagging node in one transaction with its applied
 * index, as src/checkpoint/restore.ts does from a checkpoint file.
 */
import { openDatabase, type Db, type Row, type SqlValue, type Statement } from "../../src/platform/sqlite.ts";
import type { ConfState, Entry } from "../../src/raft/index.ts";
import { encodeCommand, type Command } from "../../src/statemachine/commands.ts";
import { CairnFsm } from "../../src/statemachine/cairn.ts";
import { Applier } from "../../src/statemachine/fsm.ts";
import type { AppliedState } from "../../src/storage/store.ts";
import type { SeededRng } from "../../src/raft/index.ts";

/** Where the simulator keeps the applied index (the binary keeps it in the Raft tables of the same database). */
const SIM_TABLES = new Set(["sim_applied"]);
const APPLIED_TABLE = `
CREATE TABLE IF NOT EXISTS sim_applied (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, conf TEXT NOT NULL);
INSERT OR IGNORE INTO sim_applied VALUES (1, 0, '{"voters":[],"learners":[]}');
`;

/** The one row a new database's feed_state holds (src/statemachine/tables.ts). */
const FEED_STATE_ROW = "INSERT OR IGNORE INTO feed_state VALUES (1, 0, 1, 0)";

/** A checkpoint of the state machine: its tables' rows at `applied`, and the running hash there. */
export interface SmSnapshot {
  readonly applied: number;
  readonly hash: string;
  readonly tables: ReadonlyMap<string, readonly Row[]>;
}

export function mixString(hash: number, s: string): number {
  let h = hash ^ 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function mixBytes(hash: number, b: Uint8Array): number {
  let h = hash ^ 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

function valueText(v: SqlValue | unknown): string {
  if (v instanceof Uint8Array) return `b${mixBytes(0, v)}/${v.byteLength}`;
  return JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? `b${mixBytes(0, x)}/${x.byteLength}` : x));
}

interface SmInit {
  readonly applied: number;
  readonly hash: number;
  readonly conf?: ConfState;
}

/** Databases of finished seeds, emptied and reused: opening one and preparing its statements costs more than a seed's applies. */
const pool: SimStateMachine[] = [];
const POOL_MAX = 16;

/** A state machine on an empty in-memory database, as a new node's. */
export function openStateMachine(init: SmInit): SimStateMachine {
  const m = pool.pop();
  if (!m) return new SimStateMachine(init);
  m.reset(init);
  return m;
}

export class SimStateMachine implements AppliedState {
  readonly db: Db;
  private readonly applier: Applier;
  /** The applied index as last committed (a cache of sim_applied: read at every step by the checkers). */
  private appliedCache: number;
  private dumpStatements?: { name: string; all: Statement }[];
  private readonly s: { get: Statement; set: Statement; feedAfter: Statement };
  /**
   * Running hashes of the feed rows and of the results applied so far (kept in memory: the check's
   * state, not the node's). Two streams, each in order, so that batch boundaries do not matter.
   */
  private rowsHash: number;
  private resultsHash = 0;
  /** The last feed index whose row is in `hash`. */
  private feedSeen = 0;

  constructor(init: SmInit) {
    this.db = openDatabase(":memory:");
    this.db.exec(APPLIED_TABLE);
    const get = this.db.prepare("SELECT idx, conf FROM sim_applied WHERE id = 1");
    const set = this.db.prepare("UPDATE sim_applied SET idx = ?, conf = COALESCE(?, conf) WHERE id = 1");
    set.run(init.applied, init.conf ? JSON.stringify(init.conf) : null);
    this.appliedCache = init.applied;
    this.rowsHash = init.hash;
    this.applier = new Applier({ store: this, fsm: new CairnFsm() }); // creates the state machine's tables
    this.s = { get, set, feedAfter: this.db.prepare("SELECT idx, term, ts, data, tags FROM changes WHERE idx > ? ORDER BY idx") };
  }

  /** The seed is over: the database goes back to the pool (or is closed). */
  close(): void {
    if (pool.length < POOL_MAX) pool.push(this);
    else this.db.close();
  }

  /** Empties every table, as a newly created database: the same tables, no rows, the feed's first row. */
  reset(init: SmInit): void {
    this.db.transaction(() => {
      for (const d of this.dumpers()) this.db.exec(`DELETE FROM "${d.name}"`);
      this.db.exec(FEED_STATE_ROW);
      this.s.set.run(init.applied, JSON.stringify(init.conf ?? { voters: [], learners: [] }));
    });
    this.appliedCache = init.applied;
    this.rowsHash = init.hash;
    this.resultsHash = 0;
    this.feedSeen = 0;
  }

  // ---- AppliedState (the applied index lives in the same transaction as the effects)

  appliedIndex(): number {
    return this.appliedCache;
  }

  get applied(): number {
    return this.appliedIndex();
  }

  confState(): ConfState {
    return JSON.parse(String(this.s.get.get()!.conf)) as ConfState;
  }

  saveApplied(index: number, conf?: ConfState): void {
    this.s.set.run(index, conf ? JSON.stringify(conf) : null);
    // Set inside the transaction: a rollback would leave it ahead, but any throw in a simulated apply fails the seed.
    this.appliedCache = index;
  }

  /** Applies through the real Applier; mixes the new feed rows and the results into the running hash. */
  apply(entries: readonly Entry[], conf?: ConfState): Map<number, unknown> {
    if (entries.length === 0) return new Map();
    const results = this.applier.apply(entries, conf);
    let h = this.rowsHash;
    for (const r of this.s.feedAfter.all(this.feedSeen)) {
      h = mixString(h, `${r.idx}|${r.term}|${r.ts}|${r.data}|${r.tags}`);
      this.feedSeen = Number(r.idx);
    }
    this.rowsHash = h;
    for (const [index, res] of results) this.resultsHash = mixString(this.resultsHash, `${index}=${valueText(res)}`);
    return results;
  }

  /** The state's running hash at the applied index: equal on every node at the same index. */
  get hash(): string {
    return `${this.rowsHash}.${this.resultsHash}`;
  }

  // ---- checkpoints

  /** Statements that read each table in full, ordered by every column (hidden rowids differ between nodes). */
  private dumpers(): { name: string; all: Statement }[] {
    this.dumpStatements ??= this.tableNames().map((name) => {
      const cols = this.db.prepare(`PRAGMA table_info("${name}")`).all().length;
      const order = Array.from({ length: cols }, (_, i) => i + 1).join(", ");
      return { name, all: this.db.prepare(`SELECT * FROM "${name}" ORDER BY ${order}`) };
    });
    return this.dumpStatements;
  }

  private tableNames(): string[] {
    return this.db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .all()
      .map((r) => String(r.name))
      .filter((n) => !SIM_TABLES.has(n));
  }

  /** Every state-machine table's rows now (call when the applied index is the snapshot's). */
  snapshot(): SmSnapshot {
    const tables = new Map<string, Row[]>();
    for (const d of this.dumpers()) tables.set(d.name, d.all.all());
    return { applied: this.appliedIndex(), hash: this.hash, tables };
  }

  /** Replaces the state machine's tables with the snapshot's and sets the applied index, in one transaction. */
  install(snap: SmSnapshot, conf: ConfState): void {
    this.db.transaction(() => {
      for (const d of this.dumpers()) this.db.exec(`DELETE FROM "${d.name}"`);
      for (const [name, rows] of snap.tables) {
        for (const row of rows) {
          const cols = Object.keys(row);
          const sql = `INSERT INTO "${name}" (${cols.map((c) => `"${c}"`).join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`;
          this.db.prepare(sql).run(...cols.map((c) => row[c]!));
        }
      }
      this.saveApplied(snap.applied, conf);
    });
    const [rows, res] = snap.hash.split(".");
    this.rowsHash = Number(rows);
    this.resultsHash = Number(res);
    const last = this.db.prepare("SELECT MAX(idx) AS m FROM changes").get();
    this.feedSeen = Number(last?.m ?? 0);
  }

  /** A digest of the whole state (every state-machine table, every row), for the end-of-seed comparison. */
  digest(): number {
    let h = 0;
    for (const [name, rows] of this.snapshot().tables) {
      h = mixString(h, name);
      for (const row of rows) h = mixString(h, valueText(Object.values(row).map((v) => valueText(v))));
    }
    return h;
  }
}

/** What the simulator needs of a node's state machine: the real one (SimStateMachine) or a witness's (none). */
export interface NodeStateMachine {
  readonly applied: number;
  readonly hash: string;
  apply(entries: readonly Entry[], conf?: ConfState): Map<number, unknown>;
  install(snap: SmSnapshot, conf: ConfState): void;
  snapshot(): SmSnapshot;
  digest(): number;
  close(): void;
}

/**
 * A witness's state machine: none (src/node/witness.ts, WITNESS_FSM). Only its
 * applied index moves, kept as durable at apply as a data node's; a snapshot
 * install takes the position only, never the data; it has no checkpoint to give.
 */
export class WitnessStateMachine implements NodeStateMachine {
  constructor(public applied: number) {}

  /** A witness has no state: nothing to compare with the data nodes' hashes. */
  get hash(): string {
    return "";
  }

  apply(entries: readonly Entry[]): Map<number, unknown> {
    const last = entries[entries.length - 1];
    if (last && last.index > this.applied) this.applied = last.index;
    return new Map();
  }

  install(snap: SmSnapshot): void {
    this.applied = snap.applied;
  }

  snapshot(): SmSnapshot {
    return { applied: 0, hash: "", tables: new Map() };
  }

  digest(): number {
    return 0;
  }

  close(): void {}
}

/** A random command of the real workload: changes with tags, puts, deletes, conditional writes, transactions, idempotency keys. */
export function randomCommand(rng: SeededRng, seq: number, ts: number): Command {
  const key = `k${rng.int(6)}`;
  const idem = rng.chance(0.1) ? { idem: `i${rng.int(8)}` } : {};
  const value = new TextEncoder().encode(`v${seq}`);
  const r = rng.next();
  if (r < 0.35) {
    const n = 1 + rng.int(3);
    const items = Array.from({ length: n }, (_, i) => ({ data: { p: seq, i }, tags: rng.chance(0.5) ? [`t${rng.int(3)}`] : [] }));
    return { op: "changes", ts, items, ...idem };
  }
  if (r < 0.65) return { op: "put", ts, key, value, contentType: "text/plain", ...(rng.chance(0.2) ? { ifMatch: rng.int(4) } : {}), ...idem };
  if (r < 0.8) return { op: "del", ts, key, ...idem };
  return {
    op: "txn",
    ts,
    compare: [{ key, target: "exists", op: "=", value: rng.chance(0.5) }],
    success: [{ op: "put", key, value, contentType: "text/plain" }],
    failure: [{ op: "get", key }, { op: "del", key: `k${rng.int(6)}` }],
    ...idem,
  };
}

export function encodeRandomCommand(rng: SeededRng, seq: number, ts: number): Uint8Array {
  return encodeCommand(randomCommand(rng, seq, ts));
}

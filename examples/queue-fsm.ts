/**
 * An embedder's state machine: a replicated job queue (the "scheduler's
 * queue" of DESIGN.md). Deterministic: no clock, no randomness, no I/O but
 * the database it is given; the same entries give the same tables on every
 * node. Commands are JSON: {"push": "job"} or {"take": "worker-id"}.
 */
import type { Db, Fsm, FsmEntry } from "../src/index.ts";

export type QueueResult = { pushed: number } | { job: { id: number; body: string } | null } | { error: string };

export class QueueFsm implements Fsm {
  init(db: Db): void {
    db.exec("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, body TEXT NOT NULL, taken_by TEXT)");
  }

  apply(db: Db, entry: FsmEntry): QueueResult {
    let cmd: { push?: unknown; take?: unknown };
    try {
      cmd = JSON.parse(new TextDecoder().decode(entry.data));
    } catch {
      return { error: "not JSON" };
    }
    if (typeof cmd.push === "string") {
      // The job id is the Raft index: the same on every node.
      db.prepare("INSERT INTO jobs (id, body) VALUES (?, ?)").run(entry.index, cmd.push);
      return { pushed: entry.index };
    }
    if (typeof cmd.take === "string") {
      const row = db.prepare("SELECT id, body FROM jobs WHERE taken_by IS NULL ORDER BY id LIMIT 1").get();
      if (!row) return { job: null };
      db.prepare("UPDATE jobs SET taken_by = ? WHERE id = ?").run(cmd.take, row.id);
      return { job: { id: Number(row.id), body: String(row.body) } };
    }
    return { error: "want {push: string} or {take: string}" };
  }
}

export function encode(cmd: { push: string } | { take: string }): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(cmd));
}

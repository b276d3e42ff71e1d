/**
 * Checks a Raft message that came off the wire before the core sees it: the
 * core asserts its invariants, so a malformed message from a buggy or hostile
 * peer must be refused here, with a reason, not crash the node.
 */
import type { ConfState, Entry, MessageType } from "../raft/index.ts";

const TYPES = new Set<MessageType>([
  "app", "appResp", "vote", "voteResp", "preVote", "preVoteResp", "heartbeat", "heartbeatResp",
  "snap", "timeoutNow", "readIndex", "readIndexResp", "transferLeader",
]);
const ENTRIES_MAX = 100_000;

const isIdx = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isStr = (v: unknown, max = 4096): v is string => typeof v === "string" && v.length <= max;
const isIds = (v: unknown): v is string[] => Array.isArray(v) && v.length <= 1024 && v.every((s) => isStr(s, 256));

function confOk(c: unknown): c is ConfState {
  if (typeof c !== "object" || c === null) return false;
  const o = c as Record<string, unknown>;
  return isIds(o.voters) && isIds(o.votersOutgoing) && isIds(o.learners) && isIds(o.learnersNext);
}

function entryProblem(e: unknown, i: number): string | null {
  if (typeof e !== "object" || e === null) return `entries[${i}] is not an object`;
  const o = e as Record<string, unknown>;
  if (!isIdx(o.index) || !isIdx(o.term)) return `entries[${i}] index/term not whole numbers`;
  if (!(o.data instanceof Uint8Array)) return `entries[${i}].data is not bytes`;
  if (o.kind === "normal") return o.conf === undefined ? null : `entries[${i}] normal entry with a conf change`;
  if (o.kind !== "conf") return `entries[${i}].kind ${JSON.stringify(o.kind)} unknown`;
  const cc = o.conf as Record<string, unknown> | undefined;
  if (!cc || !["init", "enter", "leave"].includes(cc.op as string) || !Array.isArray(cc.changes)) return `entries[${i}].conf malformed`;
  const ok = cc.changes.every((ch: unknown) => {
    const c = ch as Record<string, unknown> | null;
    return !!c && ["addVoter", "addLearner", "remove"].includes(c.type as string) && isStr(c.node, 256);
  });
  return ok ? null : `entries[${i}].conf.changes malformed`;
}

/** Returns why `m` is not a well-formed message for node `self`, or null. */
export function messageProblem(m: unknown, self: string): string | null {
  if (typeof m !== "object" || m === null) return "not an object";
  const o = m as Record<string, unknown>;
  if (!TYPES.has(o.type as MessageType)) return `unknown type ${JSON.stringify(o.type)}`;
  if (!isStr(o.from, 256) || !isStr(o.to, 256) || !isStr(o.cluster, 256) || !isStr(o.context)) return "from/to/cluster/context not strings";
  if (o.to !== self) return `addressed to ${JSON.stringify(o.to)}, not ${self}`;
  for (const k of ["term", "index", "logTerm", "commit", "commitTerm", "rejectHint"]) {
    if (!isIdx(o[k])) return `${k} is not a whole number`;
  }
  if (typeof o.reject !== "boolean") return "reject is not a boolean";
  if (!Array.isArray(o.entries) || o.entries.length > ENTRIES_MAX) return "entries is not a list (or too long)";
  for (let i = 0; i < o.entries.length; i++) {
    const p = entryProblem(o.entries[i], i);
    if (p) return p;
  }
  const ents = o.entries as Entry[];
  for (let i = 1; i < ents.length; i++) if (ents[i]!.index !== ents[i - 1]!.index + 1) return "entries are not consecutive";
  if (o.type === "app" && ents.length > 0 && ents[0]!.index !== (o.index as number) + 1) return "entries do not follow index";
  if (o.snapshot !== undefined) {
    const s = o.snapshot as Record<string, unknown> | null;
    if (!s || !isIdx(s.index) || !isIdx(s.term) || !confOk(s.conf)) return "snapshot metadata malformed";
  }
  if (o.type === "snap" && o.snapshot === undefined) return "snap without snapshot metadata";
  return null;
}

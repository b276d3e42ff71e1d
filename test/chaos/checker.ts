/**
 * Safety checkers for chaos runs: a per-key linearizability checker for a
 * versioned register (put, get, compare-and-set, delete) and a feed checker
 * (every acknowledged change once, in one order on every node).
 *
 * The register checker is a Wing-Gong/Lowe search: linearize, one at a time,
 * an operation that no pending operation must precede (one whose return came
 * before its call), apply it to the model, backtrack on a mismatch, and
 * remember every (linearized set, model state) already explored so that each
 * is expanded once. Histories are split per key first (a register's history is
 * linearizable iff each key's is). An operation with an unknown outcome (a
 * timeout, a connection cut after sending) has no return: it may take effect
 * at any time after its call, or never. The search is bounded by a number of
 * explored states and answers "too complex" past it instead of hanging.
 *
 * Versions are the feed index of the change that wrote a key, so they rise in
 * apply order: the model also checks that each write's version is above the
 * previous write's.
 */

export type Outcome = "ok" | "failed" | "unknown";

/** One client operation on one key, as recorded (times from performance.now()). */
export type RegisterOp =
  | { readonly f: "get"; readonly key: string; readonly outcome: Outcome; readonly callMs: number; readonly returnMs: number; readonly client: number
      /** ok: the value read (null: 404) and its version (0 when absent). */
      readonly value?: string | null; readonly version?: number }
  | { readonly f: "put"; readonly key: string; readonly outcome: Outcome; readonly callMs: number; readonly returnMs: number; readonly client: number
      readonly value: string
      /** Compare-and-set: If-Match version (0 = the key must be absent). */
      readonly ifMatch?: number
      /** The version it wrote (from the answer, or the final feed for an unknown outcome), if known. */
      readonly version?: number
      /** failed by a compare (412): the key's version the node reported. */
      readonly currentVersion?: number }
  | { readonly f: "del"; readonly key: string; readonly outcome: Outcome; readonly callMs: number; readonly returnMs: number; readonly client: number
      readonly ifMatch?: number; readonly version?: number
      /** failed: true when the node answered 404 (the key was absent), else see currentVersion. */
      readonly notFound?: boolean; readonly currentVersion?: number };

/** The model: the key's value (null when absent), its version (0 when absent), the last write's version. */
export interface RegState {
  readonly value: string | null;
  readonly version: number;
  readonly last: number;
}

/**
 * The version of a value written by an operation with an unknown outcome whose
 * version nobody saw (not in an answer, not in the feed): it matches any
 * version (the value itself is still checked).
 */
export const UNSEEN = -1;

function versionIs(s: RegState, v: number | undefined): boolean {
  return s.version === UNSEEN ? s.value !== null : s.version === (v ?? 0);
}

export const INITIAL: RegState = { value: null, version: 0, last: 0 };

/** Applies `op` to `s`: the next state, or why the operation cannot happen in state `s`. */
export function step(s: RegState, op: RegisterOp): { ok: true; next: RegState } | { ok: false; why: string } {
  const bad = (why: string) => ({ ok: false as const, why });
  const same = { ok: true as const, next: s };
  const show = `${JSON.stringify(s.value)}@${s.version === UNSEEN ? "?" : s.version}`;
  if (op.f === "get") {
    if (op.value === s.value && (s.value === null || versionIs(s, op.version))) return same;
    return bad(`read ${JSON.stringify(op.value)}@${op.version ?? 0} but the key holds ${show}`);
  }
  if (op.outcome === "failed") {
    if (op.f === "del" && op.notFound) return s.value === null ? same : bad(`answered 404 but the key holds ${show}`);
    if (op.currentVersion !== undefined) {
      return versionIs(s, op.currentVersion) ? same : bad(`compare failed reporting version ${op.currentVersion} but the key is at ${show}`);
    }
    return same;
  }
  if (op.ifMatch !== undefined && !versionIs(s, op.ifMatch)) return bad(`If-Match ${op.ifMatch} but the key is at ${show}`);
  if (op.f === "del" && s.value === null) return bad(`deleted a key that is absent`);
  const v = op.version;
  if (v !== undefined && v <= s.last) return bad(`wrote version ${v}, not above the previous write's version ${s.last}`);
  const version = v ?? UNSEEN;
  const last = v ?? s.last;
  return { ok: true, next: op.f === "put" ? { value: op.value, version, last } : { value: null, version: 0, last } };
}

export type CheckResult =
  | { readonly ok: true; readonly key: string; readonly ops: number; readonly states: number }
  | { readonly ok: false; readonly tooComplex: true; readonly key: string; readonly ops: number; readonly states: number; readonly explanation: string }
  | { readonly ok: false; readonly tooComplex?: false; readonly key: string; readonly ops: number; readonly states: number; readonly explanation: string };

export interface CheckOptions {
  /** Explored (linearized set, state) pairs per key before answering "too complex". */
  readonly statesMax?: number;
  /** Search time per key before answering "too complex". */
  readonly searchMsMax?: number;
}

export const SEARCH_MS_MAX_DEFAULT = 60_000;

export const STATES_MAX_DEFAULT = 1_000_000;

/** Operations that constrain the history: reads without an answer and plain failures change nothing. */
function relevant(op: RegisterOp): boolean {
  if (op.f === "get") return op.outcome === "ok";
  if (op.outcome !== "failed") return true;
  return op.currentVersion !== undefined || (op.f === "del" && op.notFound === true);
}

export function describeOp(op: RegisterOp, i?: number): string {
  const id = i === undefined ? "" : `#${i} `;
  const times = `[client ${op.client}, call ${op.callMs.toFixed(1)} ms, ${op.outcome === "unknown" ? "no answer" : `return ${op.returnMs.toFixed(1)} ms`}]`;
  const cas = "ifMatch" in op && op.ifMatch !== undefined ? ` If-Match ${op.ifMatch}` : "";
  let what: string;
  if (op.f === "get") what = `get ${op.key} -> ${op.outcome === "ok" ? `${JSON.stringify(op.value)}@${op.version ?? 0}` : op.outcome}`;
  else {
    const arg = op.f === "put" ? ` = ${JSON.stringify(op.value)}` : "";
    const res = op.outcome === "ok" ? `ok@${op.version}` : op.outcome === "unknown" ? `unknown${op.version === undefined ? "" : `(@${op.version} in the feed)`}` : op.f === "del" && op.notFound ? "404" : `412 (at ${op.currentVersion})`;
    what = `${op.f} ${op.key}${arg}${cas} -> ${res}`;
  }
  return `${id}${what} ${times}`;
}

/** Checks every key of `ops` separately; the first failure (or too complex), else ok for all. */
export function checkRegisterHistory(ops: readonly RegisterOp[], opts: CheckOptions = {}): { ok: boolean; results: CheckResult[] } {
  const byKey = new Map<string, RegisterOp[]>();
  for (const op of ops) {
    const list = byKey.get(op.key) ?? [];
    list.push(op);
    byKey.set(op.key, list);
  }
  const results = [...byKey].map(([key, list]) => checkKey(key, list, opts));
  return { ok: results.every((r) => r.ok), results };
}

interface Search {
  readonly ops: RegisterOp[];
  /** Indexes of the writes whose version is known, lowest version first: they took effect, in that order. */
  readonly chain: number[];
  readonly chainSet: ReadonlySet<number>;
  /** Return time used for ordering: unknown outcomes never return. */
  readonly ret: number[];
  readonly required: boolean[];
  readonly requiredCount: number;
}

/** Versions of values seen in answers (values are unique per write), given to writes whose answer was lost. */
function fillVersions(list: readonly RegisterOp[]): RegisterOp[] {
  const seen = new Map<string, number>();
  for (const o of list) {
    if (o.f === "get" && o.outcome === "ok" && o.value !== null && o.value !== undefined && o.version !== undefined) seen.set(o.value, o.version);
    if (o.f === "put" && o.outcome === "ok" && o.version !== undefined) seen.set(o.value, o.version);
  }
  return list.map((o) => (o.f === "put" && o.version === undefined && seen.has(o.value) ? { ...o, version: seen.get(o.value)! } : o));
}

function prepare(list: readonly RegisterOp[]): Search {
  const ops = fillVersions(list).filter(relevant).sort((a, b) => a.callMs - b.callMs);
  const ret = ops.map((o) => (o.outcome === "unknown" ? Infinity : o.returnMs));
  // A write whose version is known took effect (an answer, a read or the feed says so), even if
  // its client saw no answer: it must be linearized, and writes to a key apply in version order.
  const known = (o: RegisterOp) => o.f !== "get" && o.outcome !== "failed" && o.version !== undefined;
  const required = ops.map((o) => o.outcome !== "unknown" || known(o));
  const chain = ops.map((o, i) => ({ o, i })).filter(({ o }) => known(o)).sort((a, b) => (a.o as { version: number }).version - (b.o as { version: number }).version).map(({ i }) => i);
  return { ops, chain, chainSet: new Set(chain), ret, required, requiredCount: required.filter(Boolean).length };
}

/** Ops that may be linearized next: not done, and called before every pending op's return. */
function candidates(s: Search, done: Uint8Array): number[] {
  let minRet = Infinity;
  for (let i = 0; i < s.ops.length; i++) if (!done[i] && s.ret[i]! < minRet) minRet = s.ret[i]!;
  // Of the writes with known versions, only the lowest not yet linearized may come next.
  const nextInChain = s.chain.find((i) => !done[i]) ?? -1;
  const inChain = s.chainSet;
  const out: number[] = [];
  for (let i = 0; i < s.ops.length; i++) {
    if (s.ops[i]!.callMs > minRet) break; // sorted by call: later ones must wait too
    if (!done[i] && (!inChain.has(i) || i === nextInChain)) out.push(i);
  }
  // In call order: trying ops that must take effect first, before unknown ones called earlier,
  // makes the search backtrack far when an unknown write did take effect (measured: 500 s vs 0.1 s).
  return out;
}

interface Frame {
  readonly state: RegState;
  readonly cands: number[];
  next: number;
  /** The op linearized to reach this frame (-1 at the root). */
  readonly via: number;
}

/** One key's history: the search, iterative (histories run to thousands of operations). */
export function checkKey(key: string, list: readonly RegisterOp[], opts: CheckOptions = {}): CheckResult {
  const statesMax = opts.statesMax ?? STATES_MAX_DEFAULT;
  const started = performance.now();
  const deadline = started + (opts.searchMsMax ?? SEARCH_MS_MAX_DEFAULT);
  const s = prepare(list);
  const done = new Uint8Array(s.ops.length);
  const seen = new Set<string>();
  const stack: Frame[] = [{ state: INITIAL, cands: candidates(s, done), next: 0, via: -1 }];
  let requiredDone = 0;
  let states = 0;
  let deepest = { depth: -1, path: [] as number[], state: INITIAL, cands: [] as number[] };
  while (stack.length > 0) {
    if (requiredDone === s.requiredCount) return { ok: true, key, ops: s.ops.length, states };
    const top = stack[stack.length - 1]!;
    if (top.next === 0 && stack.length > deepest.depth) {
      deepest = { depth: stack.length, path: stack.slice(1).map((f) => f.via), state: top.state, cands: top.cands };
    }
    if (top.next >= top.cands.length) {
      stack.pop();
      if (top.via >= 0) {
        done[top.via] = 0;
        if (s.required[top.via]) requiredDone--;
      }
      continue;
    }
    const i = top.cands[top.next++]!;
    const r = step(top.state, s.ops[i]!);
    if (!r.ok) continue;
    done[i] = 1;
    const memo = `${doneKey(done)}|${r.next.value}|${r.next.version}|${r.next.last}`;
    if (seen.has(memo)) {
      done[i] = 0;
      continue;
    }
    seen.add(memo);
    if (++states > statesMax || ((states & 1023) === 0 && performance.now() > deadline)) {
      const explanation = `key ${JSON.stringify(key)}: gave up after exploring ${states} states in ${Math.round(performance.now() - started)} ms of ${s.ops.length} operations (too complex to decide; raise statesMax/searchMsMax or shorten the run)`;
      return { ok: false, tooComplex: true, key, ops: s.ops.length, states, explanation };
    }
    if (s.required[i]) requiredDone++;
    stack.push({ state: r.next, cands: candidates(s, done), next: 0, via: i });
  }
  return { ok: false, key, ops: s.ops.length, states, explanation: explain(key, s, deepest) };
}

function doneKey(done: Uint8Array): string {
  let out = "";
  for (let i = 0; i < done.length; i += 16) {
    let w = 0;
    for (let j = 0; j < 16 && i + j < done.length; j++) w |= done[i + j]! << j;
    out += String.fromCharCode(w + 0x100);
  }
  return out;
}

function explain(key: string, s: Search, deepest: { path: number[]; state: RegState; cands: number[] }): string {
  const lines = [`key ${JSON.stringify(key)}: not linearizable (${s.ops.length} operations).`];
  lines.push(`The longest valid order found linearizes ${deepest.path.length} operations, ending in state ${JSON.stringify(deepest.state.value)}@${deepest.state.version}:`);
  for (const i of deepest.path.slice(-8)) lines.push(`  ${describeOp(s.ops[i]!, i)}`);
  lines.push("then none of the operations that may come next fits:");
  const done = new Uint8Array(s.ops.length);
  for (const i of deepest.path) done[i] = 1;
  const nextInChain = s.chain.find((i) => !done[i]);
  const chainVersion = (i: number | undefined) => (i === undefined ? undefined : (s.ops[i] as { version?: number }).version);
  const shown = candidates({ ...s, chainSet: new Set() }, done);
  for (const i of shown.slice(0, 8)) {
    const op = s.ops[i]!;
    if (s.chainSet.has(i) && i !== nextInChain) {
      lines.push(`  ${describeOp(op, i)}: writes apply in version order, and version ${chainVersion(nextInChain)} (${describeOp(s.ops[nextInChain!]!, nextInChain)}) must come before its ${chainVersion(i)}`);
      continue;
    }
    const r = step(deepest.state, op);
    lines.push(`  ${describeOp(op, i)}: ${r.ok ? "fits here, but every order after it fails" : r.why}`);
  }
  if (shown.length === 0) lines.push("  (no operation is pending)");
  return lines.join("\n");
}

// ---------------------------------------------------------------- the feed

/** One attempt of a POST /changes; `id` names the logical change (the same for a retry with the same Idempotency-Key). */
export interface ChangeAttempt {
  readonly id: string;
  readonly outcome: Outcome;
  /** ok: the index acknowledged. */
  readonly index?: number;
  readonly node: string;
}

export interface NodeFinal {
  readonly node: string;
  /** The whole feed: index and the change id (null for changes that are not client changes, e.g. kv writes). */
  readonly feed: readonly { readonly index: number; readonly id: string | null; readonly body: string }[];
  /** key -> "version:value" */
  readonly kv: ReadonlyMap<string, string>;
}

export interface FeedResult {
  readonly ok: boolean;
  readonly problems: string[];
  readonly acknowledged: number;
  readonly feedLength: number;
}

const PROBLEMS_MAX = 20;

/**
 * Every acknowledged change is in the feed exactly once at the index it was
 * acknowledged with; no change is there twice; no refused change is there;
 * nothing is there that no client wrote; every node has the same feed and the
 * same keys.
 */
export function checkFeeds(attempts: readonly ChangeAttempt[], finals: readonly NodeFinal[]): FeedResult {
  const problems: string[] = [];
  const add = (p: string) => problems.length < PROBLEMS_MAX && problems.push(p);
  const first = finals[0];
  if (!first) return { ok: false, problems: ["no node's final state to check"], acknowledged: 0, feedLength: 0 };
  compareNodes(first, finals.slice(1), add);
  const where = new Map<string, number[]>();
  for (const ch of first.feed) if (ch.id !== null) where.set(ch.id, [...(where.get(ch.id) ?? []), ch.index]);
  const byId = new Map<string, ChangeAttempt[]>();
  for (const a of attempts) byId.set(a.id, [...(byId.get(a.id) ?? []), a]);
  let acknowledged = 0;
  for (const [id, list] of byId) {
    const at = where.get(id) ?? [];
    if (at.length > 1) add(`change ${id} is in ${first.node}'s feed ${at.length} times (indexes ${at.join(", ")}): applied twice`);
    const acks = list.filter((a) => a.outcome === "ok");
    if (acks.length > 0) acknowledged++;
    for (const a of acks) {
      if (at.length === 0) add(`change ${id} was acknowledged at index ${a.index} by ${a.node} but is not in the final feed: a lost write`);
      else if (!at.includes(a.index!)) add(`change ${id} was acknowledged at index ${a.index} by ${a.node} but the feed has it at ${at.join(", ")}`);
    }
    if (acks.length === 0 && at.length > 0 && !list.some((a) => a.outcome === "unknown")) {
      add(`change ${id} was refused (${list.map((a) => a.node).join(", ")}) but is in the feed at ${at.join(", ")}`);
    }
  }
  for (const id of where.keys()) if (!byId.has(id)) add(`change ${id} is in the feed but no client wrote it`);
  return { ok: problems.length === 0, problems, acknowledged, feedLength: first.feed.length };
}

function compareNodes(first: NodeFinal, rest: readonly NodeFinal[], add: (p: string) => void): void {
  for (const n of rest) {
    const len = Math.max(n.feed.length, first.feed.length);
    for (let i = 0; i < len; i++) {
      const a = first.feed[i];
      const b = n.feed[i];
      if (a?.index !== b?.index || a?.body !== b?.body) {
        const show = (x: typeof a) => (x ? `${x.index} ${x.body.slice(0, 120)}` : "nothing");
        add(`feeds differ at position ${i}: ${first.node} has ${show(a)}, ${n.node} has ${show(b)} (${first.feed.length} vs ${n.feed.length} changes)`);
        break;
      }
    }
    const keys = new Set([...first.kv.keys(), ...n.kv.keys()]);
    for (const k of keys) {
      if (first.kv.get(k) !== n.kv.get(k)) add(`key ${k}: ${first.node} has ${first.kv.get(k) ?? "nothing"}, ${n.node} has ${n.kv.get(k) ?? "nothing"}`);
    }
  }
}

// ---------------------------------------------------------------- key-value writes in the feed

/** A key-value change of the feed: {"op": "put" | "del", key, version, text?}. */
export interface KvChange {
  readonly index: number;
  readonly op: "put" | "del";
  readonly key: string;
  readonly version: number;
  readonly text?: string;
}

/**
 * Every acknowledged key-value write is in the feed with the version it was
 * acknowledged with; no value is written twice; no refused put's value and no
 * value that no client wrote is there.
 */
export function checkKvFeed(ops: readonly RegisterOp[], feed: readonly KvChange[]): { ok: boolean; problems: string[] } {
  const problems: string[] = [];
  const add = (p: string) => problems.length < PROBLEMS_MAX && problems.push(p);
  const byVersion = new Map(feed.map((ch) => [`${ch.key}@${ch.version}`, ch]));
  const putsOf = new Map<string, KvChange[]>();
  for (const ch of feed) if (ch.op === "put") putsOf.set(`${ch.key}=${ch.text}`, [...(putsOf.get(`${ch.key}=${ch.text}`) ?? []), ch]);
  const written = new Map<string, Outcome[]>();
  for (const op of ops) {
    if (op.f === "get") continue;
    if (op.f === "put") written.set(`${op.key}=${op.value}`, [...(written.get(`${op.key}=${op.value}`) ?? []), op.outcome]);
    if (op.outcome !== "ok") continue;
    const ch = byVersion.get(`${op.key}@${op.version}`);
    const want = op.f === "put" ? `put ${JSON.stringify(op.value)}` : "del";
    const got = ch ? (ch.op === "put" ? `put ${JSON.stringify(ch.text)}` : "del") : "nothing";
    if (got !== want) add(`${describeOp(op)}: acknowledged, but the feed has ${got} for ${op.key} at version ${op.version}`);
  }
  for (const [kv, list] of putsOf) {
    if (list.length > 1) add(`${kv} is in the feed ${list.length} times (indexes ${list.map((c) => c.index).join(", ")}): applied twice`);
    const outcomes = written.get(kv);
    if (!outcomes) add(`${kv} is in the feed (index ${list[0]!.index}) but no client wrote it`);
    else if (outcomes.every((o) => o === "failed")) add(`${kv} was refused but is in the feed (index ${list[0]!.index})`);
  }
  return { ok: problems.length === 0, problems };
}

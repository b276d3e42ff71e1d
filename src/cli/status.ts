/**
 * `cairn status`: the whole cluster as one table (every node's own /status,
 * and the leader's view of lag and contact); `--json` prints the first
 * answering node's /status as it is. `cairn top` redraws the table until
 * Ctrl-C (exit 0).
 */
import { onTerminate } from "../platform/process.ts";
import { expectArgs, parse, UsageError } from "./args.ts";
import { CLIENT_OPTIONS, ClientError, json, request, target, type Target } from "./client.ts";

/** The parts of GET /status the table shows. */
interface Status {
  id: string;
  role: string;
  term: number;
  cluster?: string;
  leader: { id: string } | null;
  index: { commit: number; applied: number };
  members: { id: string; api: string | null; lag: number | null; lastContactMs: number | null }[];
  problems: string[];
}

/** Each node's /status may take this long; a node that does not answer in time is shown as unreachable. */
const NODE_TIMEOUT_MS = 2000;
/** More nodes than this are not asked (a cluster file is bounded too; this bounds the table). */
const NODES_MAX = 64;

type Row = { id: string; url: string; status: Status } | { id: string; url: string; error: string };

/** Asks the first node (as every client command does), then every other member's API. */
async function gather(t: Target): Promise<{ first: Status; rows: Row[] }> {
  const first = (await json(await request(t, "/status"))) as Status;
  const urls = new Map<string, string>();
  for (const m of first.members) if (m.api) urls.set(m.id, m.api.replace(/\/$/, ""));
  // Nodes of a cluster file that the members list does not name (not joined yet) are asked too.
  for (const u of t.urls) if (![...urls.values()].includes(u)) urls.set(u, u);
  const entries = [...urls].slice(0, NODES_MAX);
  const rows = await Promise.all(entries.map(([id, url]) => nodeRow(t, id, url)));
  return { first, rows };
}

async function nodeRow(t: Target, id: string, url: string): Promise<Row> {
  try {
    const headers: Record<string, string> = t.token ? { authorization: `Bearer ${t.token}` } : {};
    const res = await t.fetch(`${url}/status`, { headers, signal: AbortSignal.timeout(NODE_TIMEOUT_MS) });
    const status = (await json(res)) as Status;
    return { id: status.id, url, status };
  } catch (e) {
    const cause = (e as { cause?: unknown }).cause;
    return { id, url, error: `unreachable: ${(e as Error).message}${cause instanceof Error ? ` (${cause.message})` : ""}` };
  }
}

const dash = (v: number | null | undefined) => (v === null || v === undefined ? "-" : String(v));

/** The table: one line per node; lag and last contact are the leader's view. */
export function renderTable(rows: readonly Row[], now = Date.now()): string {
  const leaderRow = rows.find((r): r is Extract<Row, { status: Status }> => "status" in r && r.status.role === "leader");
  const view = new Map((leaderRow?.status.members ?? []).map((m) => [m.id, m]));
  const head = ["NODE", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "LAST CONTACT", "PROBLEMS"];
  const lines = rows.map((r) => {
    if ("error" in r) return [r.id, "unreachable", "-", "-", "-", dash(view.get(r.id)?.lag), contact(view.get(r.id)?.lastContactMs), r.error];
    const s = r.status;
    const isLeader = s.role === "leader";
    const m = view.get(s.id);
    return [s.id, s.role, String(s.term), String(s.index.commit), String(s.index.applied), isLeader ? "0" : dash(m?.lag), isLeader ? "self" : contact(m?.lastContactMs), s.problems.join("; ") || "none"];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  const leader = leaderRow ? `${leaderRow.status.id} (term ${leaderRow.status.term})` : "none reachable";
  const cluster = rows.map((r) => ("status" in r ? r.status.cluster : undefined)).find((c) => c) ?? "?";
  const title = `cluster ${cluster} · leader ${leader} · ${rows.length} nodes · ${new Date(now).toISOString()}`;
  return [title, fmt(head), ...lines.map(fmt)].join("\n");
}

function contact(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  return ms < 10_000 ? `${ms} ms ago` : `${Math.round(ms / 1000)} s ago`;
}

const STATUS_OPTIONS = { ...CLIENT_OPTIONS, json: { type: "boolean", default: false } } as const;
export const STATUS_USAGE = "cairn status [--json] (--url URL | --config FILE)";

export async function status(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, STATUS_OPTIONS, STATUS_USAGE);
  expectArgs(positionals, { min: 0, max: 0 }, STATUS_USAGE);
  const t = target(values);
  if (values.json) {
    console.log(JSON.stringify(await json(await request(t, "/status")), null, 2));
    return 0;
  }
  console.log(renderTable((await gather(t)).rows));
  return 0;
}

const TOP_OPTIONS = { ...CLIENT_OPTIONS, interval: { type: "string", default: "1" } } as const;
export const TOP_USAGE = "cairn top [--interval SEC] (--url URL | --config FILE)";
const INTERVAL_SEC = { min: 0.2, max: 60 };

/** Redraws the table every --interval seconds until SIGINT/SIGTERM; a round that fails shows its error and goes on. */
export async function top(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, TOP_OPTIONS, TOP_USAGE);
  expectArgs(positionals, { min: 0, max: 0 }, TOP_USAGE);
  const sec = Number(values.interval);
  if (!/^\d+(\.\d+)?$/.test(values.interval) || sec < INTERVAL_SEC.min || sec > INTERVAL_SEC.max) {
    throw new UsageError(`--interval ${JSON.stringify(values.interval)} is not a number of seconds from ${INTERVAL_SEC.min} to ${INTERVAL_SEC.max}`);
  }
  const t = target(values);
  let stop: () => void = () => {};
  const stopped = new Promise<void>((res) => (stop = res));
  let done = false;
  onTerminate(() => {
    done = true;
    stop();
  });
  // On a terminal the screen is cleared and redrawn; piped, each round follows the last.
  const clear = process.stdout.isTTY ? "\x1b[H\x1b[2J" : "";
  while (!done) {
    let text: string;
    try {
      text = renderTable((await gather(t)).rows);
    } catch (e) {
      if (!(e instanceof ClientError)) throw e;
      text = `cairn top: ${e.message}`;
    }
    if (done) break;
    process.stdout.write(`${clear}${text}\n${clear ? "" : "\n"}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([stopped, new Promise((res) => (timer = setTimeout(res, sec * 1000)))]);
    clearTimeout(timer);
  }
  return 0;
}

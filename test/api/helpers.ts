/** A real single CairnNode on loopback with the API app over it, for route tests. */
import { createApp, type ApiOptions } from "../../src/api/app.ts";
import { Authenticator } from "../../src/api/auth.ts";
import { sha256Hex, type Role, TokenSet } from "../../src/api/tokens.ts";
import type { CairnNode } from "../../src/node/node.ts";
import { Logger } from "../../src/util/log.ts";
import { inprocCluster, type InprocCluster } from "../helpers/inproc.ts";
import { waitFor } from "../helpers/ports.ts";

export interface ApiHarness {
  readonly node: CairnNode;
  readonly cluster: InprocCluster;
  readonly app: ReturnType<typeof createApp>;
  readonly logs: string[];
  /** app.request with a path relative to the app. */
  req(path: string, init?: RequestInit): Promise<Response>;
  /** Another app over the same node, with other options. */
  appWith(opts: Partial<Omit<ApiOptions, "node" | "logger">>): ReturnType<typeof createApp>;
  close(): Promise<void>;
}

export async function singleNode(opts: Partial<Omit<ApiOptions, "node" | "logger">> = {}): Promise<ApiHarness> {
  const cluster = await inprocCluster(["n1"]);
  const node = await cluster.start("n1");
  await waitFor("n1 leads", () => node.status().role === "leader" && node.readiness().ready, 15_000);
  const logs: string[] = [];
  const logger = new Logger({ level: "debug", sink: (l) => logs.push(l) });
  const app = createApp({ node, logger, version: "test", ...opts });
  return {
    node,
    cluster,
    app,
    logs,
    req: (path, init) => Promise.resolve(app.request(path, init)),
    appWith: (more) => createApp({ node, logger, version: "test", ...opts, ...more }),
    close: () => cluster.close(),
  };
}

export const jsonInit = (method: string, body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});

// deno-lint-ignore no-explicit-any
export async function bodyOf(res: Response): Promise<any> {
  return await res.json();
}

/** Reads SSE text from a response until `done(text)` holds or the deadline passes. */
export async function readSseUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  done: (text: string) => boolean,
  timeoutMs = 5000,
  initial = "",
): Promise<string> {
  const decoder = new TextDecoder();
  let text = initial;
  const deadline = Date.now() + timeoutMs;
  while (!done(text)) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`SSE: condition not met within ${timeoutMs} ms; got ${JSON.stringify(text)}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      reader.read(),
      new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), left))),
    ]).finally(() => clearTimeout(timer));
    if (r === "timeout") continue;
    if (r.done) throw new Error(`SSE: stream ended; got ${JSON.stringify(text)}`);
    text += decoder.decode(r.value, { stream: true });
  }
  return text;
}

export interface SseEvent {
  event?: string;
  id?: string;
  data: string;
}

/** Parses complete SSE messages (comments dropped). */
export function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split("\n\n").slice(0, -1)) {
    const ev: SseEvent = { data: "" };
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":") || line === "") continue;
      const i = line.indexOf(":");
      const field = line.slice(0, i);
      const value = line.slice(i + 1).replace(/^ /, "");
      if (field === "data") data.push(value);
      else if (field === "event") ev.event = value;
      else if (field === "id") ev.id = value;
    }
    ev.data = data.join("\n");
    if (data.length > 0) out.push(ev);
  }
  return out;
}

/** The value of a gauge or counter line in Prometheus text. */
export function metricValue(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** A TokenSet of plain tokens by role (the file would hold their hashes). */
export function tokenSet(byRole: Partial<Record<Role, string[]>>): TokenSet {
  const entries = Object.entries(byRole).flatMap(([role, toks]) =>
    (toks ?? []).map((t, i) => ({ name: `${role}${i}`, role: role as Role, sha256: sha256Hex(t) })),
  );
  return new TokenSet(entries);
}

/** An Authenticator over fixed plain tokens. */
export function authWith(byRole: Partial<Record<Role, string[]>>, opts: { clientCa?: boolean } = {}): Authenticator {
  const set = tokenSet(byRole);
  return new Authenticator({ tokens: () => set, clientCa: opts.clientCa });
}

/**
 * Proposing a write: the command's time and idempotency key, `?wait=none`,
 * a deadline, and the answer rendered from the state machine's result.
 */
import type { Context } from "hono";
import type { ZodError } from "zod";
import type { ProposeOutcome } from "../node/api.ts";
import type { Command, CommandResult, Replayed } from "../statemachine/commands.ts";
import { bounded, json, type ApiContext } from "./context.ts";
import { renderResult, type Rendered } from "./encode.ts";
import { waitParam } from "./request.ts";

/** A command without the fields every write gets from the request (time, idempotency key). */
export type CommandBody = Command extends infer C ? (C extends Command ? Omit<C, "ts" | "idem"> : never) : never;

/** Proposes with ts = now and the Idempotency-Key header; honours ?wait=none. */
export async function proposeOutcome(ctx: ApiContext, c: Context, body: CommandBody): Promise<ProposeOutcome> {
  const wait = waitParam(c.req.query("wait"));
  const idem = c.req.header("idempotency-key");
  const cmd = { ...body, ts: Date.now(), ...(idem === undefined ? {} : { idem }) } as Command;
  const ms = ctx.limits.writeTimeoutMs;
  return bounded(ctx.node.propose(cmd, { wait, timeoutMs: ms }), ms, "the write");
}

/** 202 for an accepted (not yet committed) write. */
export function acceptedResponse(o: { raftIndex: number; term: number }): Response {
  return json({ raftIndex: o.raftIndex, term: o.term, status: "accepted" }, 202);
}

/** The common case: propose and answer with the rendered result. */
export async function propose(
  ctx: ApiContext,
  c: Context,
  body: CommandBody,
  render: (r: Replayed<CommandResult>) => Rendered & { headers?: Record<string, string> } = (r) => renderResult(r),
): Promise<Response> {
  const out = await proposeOutcome(ctx, c, body);
  if (out.kind === "accepted") return acceptedResponse(out);
  const r = render(out.result);
  return json(r.body, r.status, r.headers);
}

/** A zod error as one line: "items[0].tags: Expected array, received string; ...". */
export function zodMessage(err: ZodError, root = ""): string {
  return err.issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("");
      const where = root === "!" ? path.replace(/^\[0\]\.?/, "") : path.replace(/^\./, "");
      return `${where === "" ? "body" : where}: ${i.message}`;
    })
    .join("; ");
}

/**
 * Free loopback ports chosen at run time, below the kernel's ephemeral port range.
 *
 * Why not "listen on 0": that hands out an ephemeral port, and a test binds it only later (a node
 * started seconds after `cairn init`, a child process that has to boot). Meanwhile any outgoing
 * connection on the machine may get that same port as its local port, and a live client socket on
 * it makes the later listen fail with EADDRINUSE (a node that then exits looks like a cluster that
 * never agrees on a leader). Ports below the ephemeral range are never handed out that way.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** Ports under this are left alone (well-known and registered services). */
const POOL_MIN = 10_000;
/** A pool smaller than this is too crowded to pick from at random. */
const POOL_SIZE_MIN = 2_000;
/** Random picks tried before giving up. */
const PICK_TRIES_MAX = 200;

/** The kernel's ephemeral (client) port range: Linux's setting, else the IANA range macOS uses. */
export function ephemeralPortRange(): { lo: number; hi: number } {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi) && lo! > 0 && hi! >= lo!) return { lo: lo!, hi: hi! };
  } catch {
    // Not Linux: the IANA range.
  }
  return { lo: 49_152, hi: 65_535 };
}

/** Where test ports come from: [min, max], outside the ephemeral range. */
export function portPool(): { min: number; max: number } {
  const { lo, hi } = ephemeralPortRange();
  if (lo - 1 - POOL_MIN >= POOL_SIZE_MIN) return { min: POOL_MIN, max: lo - 1 };
  if (65_535 - hi >= POOL_SIZE_MIN) return { min: hi + 1, max: 65_535 };
  throw new Error(`no room for test ports outside the ephemeral port range ${lo}-${hi}: narrow net.ipv4.ip_local_port_range`);
}

async function canListen(port: number, host: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** The first port of `count` consecutive free ports from the pool. */
export async function freePortRun(count: number, host = "127.0.0.1"): Promise<number> {
  const { min, max } = portPool();
  for (let i = 0; i < PICK_TRIES_MAX; i++) {
    const start = min + Math.floor(Math.random() * (max - min + 2 - count));
    let free = true;
    for (let p = start; p < start + count && free; p++) free = await canListen(p, host);
    if (free) return start;
  }
  throw new Error(`no ${count} free consecutive ports on ${host} in ${min}-${max} after ${PICK_TRIES_MAX} random picks`);
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return await freePortRun(1, host);
}

export async function freePorts(n: number, host = "127.0.0.1"): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort(host));
  return [...out];
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A private network for a chaos run: one network namespace per node, each
 * with a veth pair to a bridge in the root namespace (which carries the
 * clients' traffic: the bridge has its own address in the same /24). Network
 * faults are iptables rules inside the node namespaces on traffic between
 * nodes only, so clients always reach every node: partitions drop a peer's
 * packets on INPUT, loss drops them at random (iptables' statistic match:
 * this kernel has no netem).
 *
 * Addresses: 10.231.T.0/24, with T a free tag; nothing else is ever sent to.
 * Every namespace, link and rule made here, destroy() removes; a run killed
 * before it could is cleaned by the next one (a tag file records the pid).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const TAG_DIR = "/tmp/cairn-chaos-net";
const TAGS_MAX = 250;

const TRIES_MAX = 5;
const RETRY_MS = 200;

/**
 * Runs a command, retrying a failure a few times: another process on the machine may be
 * reinstalling iptables (its alternatives symlinks are briefly broken: seen once in a soak).
 */
function run(cmd: string[], allowFail = false): { ok: boolean; out: string } {
  let r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8" });
  for (let i = 1; i < TRIES_MAX && r.status !== 0 && !allowFail; i++) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RETRY_MS);
    r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8" });
  }
  const ok = r.status === 0;
  if (!ok && !allowFail) throw new Error(`${cmd.join(" ")} failed (status ${r.status}): ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  return { ok, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

const has = (bin: string) => spawnSync("sh", ["-c", `command -v ${bin}`]).status === 0;

/** Why namespaces cannot be used here (null if they can), installing iptables from Debian's packages if missing. */
export function netnsUnavailable(): string | null {
  if (process.platform !== "linux") return `not Linux (${process.platform})`;
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "not root (ip netns and iptables need root)";
  if (!has("ip")) return "no `ip` command (iproute2)";
  if (!has("iptables")) {
    const r = spawnSync("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables"], { encoding: "utf8" });
    if (r.status !== 0 || !has("iptables")) return `iptables is missing and apt-get install iptables failed: ${(r.stderr ?? "").trim().slice(-300)}`;
  }
  const probe = `cairnprobe${process.pid}`;
  const made = run(["ip", "netns", "add", probe], true);
  if (!made.ok) return `ip netns add failed: ${made.out.trim()}`;
  const rule = run(["ip", "netns", "exec", probe, "iptables", "-A", "INPUT", "-s", "10.231.255.1", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP"], true);
  run(["ip", "netns", "del", probe], true);
  return rule.ok ? null : `iptables inside a namespace failed: ${rule.out.trim()}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes namespaces and bridges of runs whose process is gone. */
function cleanStale(): void {
  mkdirSync(TAG_DIR, { recursive: true });
  for (const f of readdirSync(TAG_DIR)) {
    const rec = JSON.parse(readFileSync(join(TAG_DIR, f), "utf8")) as { pid: number; ns: string[]; bridge: string };
    if (pidAlive(rec.pid)) continue;
    for (const ns of rec.ns) run(["ip", "netns", "del", ns], true);
    run(["ip", "link", "del", rec.bridge], true);
    rmSync(join(TAG_DIR, f), { force: true });
  }
}

export class NetLab {
  private readonly rules = new Map<string, string[][]>();
  private constructor(
    readonly tag: number,
    readonly ids: readonly string[],
    private readonly record: { pid: number; ns: string[]; bridge: string },
  ) {}

  get bridge(): string {
    return this.record.bridge;
  }

  ns(id: string): string {
    return `cairnchaos${this.tag}-${id}`;
  }

  /** The node's address: 10.231.tag.(position + 1). */
  ip(id: string): string {
    const i = this.ids.indexOf(id);
    if (i < 0) throw new Error(`node ${id} has no namespace in this lab (${this.ids.join(", ")})`);
    return `10.231.${this.tag}.${i + 1}`;
  }

  /** The command prefix that runs a program inside `id`'s namespace. */
  wrap(id: string): string[] {
    return ["ip", "netns", "exec", this.ns(id)];
  }

  static create(ids: readonly string[]): NetLab {
    cleanStale();
    const used = new Set(readdirSync(TAG_DIR).map(Number));
    let tag = -1;
    for (let t = 0; t < TAGS_MAX; t++) {
      if (!used.has(t) && !existsSync(`/sys/class/net/cc${t}br`)) {
        tag = t;
        break;
      }
    }
    if (tag < 0) throw new Error(`no free network tag in ${TAG_DIR} (${TAGS_MAX} in use): remove stale files there`);
    const rec = { pid: process.pid, ns: [] as string[], bridge: `cc${tag}br` };
    writeFileSync(join(TAG_DIR, String(tag)), JSON.stringify(rec));
    const lab = new NetLab(tag, ids, rec);
    try {
      lab.build();
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  private build(): void {
    const br = this.bridge;
    run(["ip", "link", "add", br, "type", "bridge"]);
    run(["ip", "addr", "add", `10.231.${this.tag}.254/24`, "dev", br]);
    run(["ip", "link", "set", br, "up"]);
    this.ids.forEach((id, i) => {
      const ns = this.ns(id);
      const host = `cc${this.tag}v${i}`;
      const inner = `cc${this.tag}p${i}`;
      // The tag is ours (its record's process is alive), so a namespace or link with our names is
      // a leftover of a killed run whose record was already gone: remove it first.
      run(["ip", "netns", "del", ns], true);
      run(["ip", "link", "del", host], true);
      run(["ip", "netns", "add", ns]);
      this.record.ns.push(ns);
      writeFileSync(join(TAG_DIR, String(this.tag)), JSON.stringify(this.record));
      run(["ip", "link", "add", host, "type", "veth", "peer", "name", inner]);
      run(["ip", "link", "set", inner, "netns", ns]);
      run(["ip", "link", "set", host, "master", br]);
      run(["ip", "link", "set", host, "up"]);
      const x = (...a: string[]) => run(["ip", "netns", "exec", ns, ...a]);
      x("ip", "link", "set", "lo", "up");
      x("ip", "addr", "add", `${this.ip(id)}/24`, "dev", inner);
      x("ip", "link", "set", inner, "up");
    });
  }

  private iptables(id: string, args: string[]): void {
    run(["ip", "netns", "exec", this.ns(id), "iptables", ...args]);
    const list = this.rules.get(id) ?? [];
    list.push(args);
    this.rules.set(id, list);
  }

  /** `to` stops receiving what `from` sends (a one-way cut). */
  dropFrom(to: string, from: string): void {
    this.iptables(to, ["-A", "INPUT", "-s", this.ip(from), "-j", "DROP"]);
  }

  /** Cuts every link between the two groups, both ways. */
  split(a: readonly string[], b: readonly string[]): void {
    for (const x of a) {
      for (const y of b) {
        this.dropFrom(x, y);
        this.dropFrom(y, x);
      }
    }
  }

  /** Drops each packet between nodes with probability p (clients' packets pass). */
  loss(p: number): void {
    for (const to of this.ids) {
      for (const from of this.ids) {
        if (from !== to) this.iptables(to, ["-A", "INPUT", "-s", this.ip(from), "-m", "statistic", "--mode", "random", "--probability", String(p), "-j", "DROP"]);
      }
    }
  }

  /** Removes every fault rule. */
  heal(): void {
    for (const id of this.rules.keys()) run(["ip", "netns", "exec", this.ns(id), "iptables", "-F", "INPUT"], true);
    this.rules.clear();
  }

  destroy(): void {
    for (const ns of this.record.ns) run(["ip", "netns", "del", ns], true);
    run(["ip", "link", "del", this.bridge], true);
    rmSync(join(TAG_DIR, String(this.tag)), { force: true });
  }
}

/**
 * Applies the faults of a schedule to a running cluster, and undoes each at
 * its end. Faults run one at a time; end() always restores the cluster
 * (network healed, processes running, membership and disk back).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { ClusterFileNode, E2ECluster } from "../e2e/harness.ts";
import { NETWORK_KINDS, type Fault } from "./faults.ts";
import type { NetLab } from "./net.ts";

export interface NemesisOptions {
  readonly cluster: E2ECluster;
  readonly lab: NetLab | null;
  readonly ids: readonly string[];
  readonly startNode: (id: string) => void;
  readonly log: (msg: string) => void;
}

/** What end() must undo. */
interface Undo {
  killed?: string;
  paused?: string;
  removed?: { id: string; entry: ClusterFileNode; at: number };
  filled?: string;
  net?: boolean;
}

export class Nemesis {
  private undo: Undo = {};
  constructor(private readonly o: NemesisOptions) {}

  /** The leader as most nodes that answer within a second see it (highest term wins a tie). */
  async leader(): Promise<string | null> {
    const views = await Promise.all(
      this.o.ids.map(async (id) => {
        try {
          const r = await this.o.cluster.get(id, "/status", { signal: AbortSignal.timeout(1000) });
          const s = (await r.json()) as { term: number; leader: { id: string } | null };
          return s.leader ? { id: s.leader.id, term: s.term } : null;
        } catch {
          return null;
        }
      }),
    );
    const best = views.filter((v) => v !== null).sort((a, b) => b!.term - a!.term)[0];
    return best?.id ?? null;
  }

  /** Applies `f`; returns a description of what was done (with the leader resolved). */
  async begin(f: Fault): Promise<string> {
    const c = this.o.cluster;
    const lab = this.o.lab;
    const target = f.nodes[0]!;
    // Set first: a network fault that fails half-way still has its rules removed by end().
    if (NETWORK_KINDS.includes(f.kind)) this.undo.net = true;
    switch (f.kind) {
      case "partition":
        lab!.split(f.groups![0]!, f.groups![1]!);
        this.undo.net = true;
        return `split {${f.groups![0]!.join(",")}} | {${f.groups![1]!.join(",")}}`;
      case "bridge":
        lab!.split(f.groups![0]!, f.groups![1]!);
        this.undo.net = true;
        return `bridge via ${target}: {${f.groups![0]!.join(",")}} | {${f.groups![1]!.join(",")}}`;
      case "isolate-leader": {
        const l = (await this.leader()) ?? this.o.ids[0]!;
        lab!.split([l], this.o.ids.filter((x) => x !== l));
        this.undo.net = true;
        return `isolated leader ${l}`;
      }
      case "one-way":
        lab!.dropFrom(f.nodes[1]!, target);
        this.undo.net = true;
        return `${f.nodes[1]} stops receiving from ${target}`;
      case "loss":
        lab!.loss(f.lossP!);
        this.undo.net = true;
        return `${Math.round(f.lossP! * 100)}% loss between nodes`;
      case "kill":
        await c.signal(target, "SIGKILL");
        this.undo.killed = target;
        return `kill -9 ${target}`;
      case "pause":
        await c.signal(target, "SIGSTOP");
        this.undo.paused = target;
        return `SIGSTOP ${target}`;
      case "transfer":
        return await this.transfer(target);
      case "membership":
        return this.remove(target);
      case "disk-full":
        this.fill(target);
        return `filled the disk of ${target}`;
    }
  }

  private async transfer(target: string): Promise<string> {
    const l = (await this.leader()) ?? this.o.ids[0]!;
    // The schedule drew the target before knowing the leader: the next node if they are the same.
    const to = target === l ? this.o.ids[(this.o.ids.indexOf(l) + 1) % this.o.ids.length]! : target;
    try {
      const r = await this.o.cluster.get(l, "/admin/leader", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ to }),
        signal: AbortSignal.timeout(5000),
      });
      return `leader transfer ${l} -> ${to}: ${r.status} ${(await r.text()).slice(0, 120)}`;
    } catch (e) {
      return `leader transfer ${l} -> ${to}: ${(e as Error).name}`;
    }
  }

  private remove(id: string): string {
    const c = this.o.cluster;
    const f = c.readFile();
    const at = f.nodes.findIndex((n) => n.id === id);
    const entry = f.nodes[at]!;
    c.editFile((x) => {
      x.nodes = x.nodes.filter((n) => n.id !== id);
    });
    this.undo.removed = { id, entry, at };
    return `removed ${id} from the cluster file`;
  }

  private fill(id: string): void {
    // dd stops at ENOSPC: the tmpfs is then full.
    spawnSync("sh", ["-c", `dd if=/dev/zero of=${join(this.o.cluster.dataDir(id), "chaos-filler")} bs=1M 2>/dev/null; true`]);
    this.undo.filled = id;
  }

  /** Undoes the fault in force; returns what it did. */
  async end(): Promise<string> {
    const u = this.undo;
    this.undo = {};
    const done: string[] = [];
    if (u.net) {
      this.o.lab!.heal();
      done.push("healed the network");
    }
    if (u.paused) {
      await this.o.cluster.signal(u.paused, "SIGCONT");
      done.push(`SIGCONT ${u.paused}`);
    }
    if (u.killed) {
      this.o.startNode(u.killed);
      done.push(`restarted ${u.killed}`);
    }
    if (u.filled) {
      rmSync(join(this.o.cluster.dataDir(u.filled), "chaos-filler"), { force: true });
      done.push(`freed the disk of ${u.filled}`);
    }
    if (u.removed) done.push(await this.readd(u.removed));
    return done.join(", ");
  }

  /** A removed node comes back the documented way: an empty data directory, its entry back in the file. */
  private async readd(r: NonNullable<Undo["removed"]>): Promise<string> {
    const c = this.o.cluster;
    const out = await this.outOfMembership(r.id);
    await c.signal(r.id, "SIGKILL");
    const dir = c.dataDir(r.id);
    // Empty it but keep the directory: it may be a tmpfs mount point.
    mkdirSync(dir, { recursive: true });
    for (const e of readdirSync(dir)) rmSync(join(dir, e), { recursive: true, force: true });
    c.editFile((x) => {
      x.nodes.splice(r.at, 0, r.entry);
    });
    this.o.startNode(r.id);
    return `${r.id} ${out ? "was out of the membership" : "was still a member (the removal had not finished)"}; wiped it and added it back`;
  }

  private async outOfMembership(id: string): Promise<boolean> {
    const l = await this.leader();
    if (!l) return false;
    try {
      const r = await this.o.cluster.get(l, "/status", { signal: AbortSignal.timeout(1000) });
      const s = (await r.json()) as { members: { id: string }[] };
      return !s.members.some((m) => m.id === id);
    } catch {
      return false;
    }
  }
}

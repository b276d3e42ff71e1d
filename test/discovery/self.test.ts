import { describe, expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { SelfAmbiguousError, SelfError, SelfNotFoundError } from "../../src/discovery/errors.ts";
import { type ClusterConfig, parseClusterText } from "../../src/discovery/load.ts";
import { findSelf, type InterfaceMap } from "../../src/discovery/self.ts";
import { type FileNode, nodes } from "./helpers.ts";

function config(ns: FileNode[]): ClusterConfig {
  const r = parseClusterText(JSON.stringify({ cluster: "c", nodes: ns }), "/etc/cairn/cluster.json");
  if (!r.ok) throw r.error;
  return r.config;
}

const BOX2: InterfaceMap = {
  lo: [{ address: "127.0.0.1" }, { address: "::1" }],
  eth0: [{ address: "10.0.0.2" }, { address: "fe80::1c2:3ff:fe04:506%eth0" }],
};

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected findSelf to throw");
}

describe("findSelf", () => {
  test("--id picks that entry whatever the addresses say", () => {
    const m = findSelf(config(nodes(3)), { id: "n3", interfaces: BOX2, hostnames: ["box2"] });
    expect(m.node.id).toBe("n3");
    expect(m.how).toBe("id");
    expect(m.detail).toBe("--id n3");
  });

  test("an --id the file does not have is SelfNotFoundError listing the ids", () => {
    const e = caught(() => findSelf(config(nodes(3)), { id: "n9", interfaces: BOX2 }));
    expect(e).toBeInstanceOf(SelfNotFoundError);
    expect(e).toBeInstanceOf(SelfError);
    expect((e as SelfNotFoundError).reason).toBe("unknownId");
    expect((e as Error).message).toBe(
      'cluster file /etc/cairn/cluster.json: --id "n9" is not in it (its ids are n1, n2, n3); pass one of its ids, or add this node to the file',
    );
  });

  test("--id with a file that lists no nodes yet", () => {
    const e = caught(() => findSelf(config([]), { id: "n1" }));
    expect((e as SelfNotFoundError).reason).toBe("unknownId");
    expect((e as Error).message).toContain("it lists no nodes yet");
  });

  test("without --id the entry whose peer host is an interface address", () => {
    const m = findSelf(config(nodes(3)), { interfaces: BOX2, hostnames: ["box2"] });
    expect(m.node.id).toBe("n2");
    expect(m.how).toBe("address");
    expect(m.detail).toBe("peer host 10.0.0.2 is an address of interface eth0");
  });

  test("IPv6 addresses match in any spelling, zone ids ignored", () => {
    const ns = nodes(2);
    ns[1] = { ...ns[1]!, peer: "[FE80:0:0:0:1C2:3FF:FE04:506]:7400" };
    const m = findSelf(config(ns), { interfaces: BOX2, hostnames: [] });
    expect(m.node.id).toBe("n2");
  });

  test("an IPv4-mapped interface address matches an IPv4 peer", () => {
    const m = findSelf(config(nodes(3)), { interfaces: { eth0: [{ address: "::ffff:10.0.0.3" }] }, hostnames: [] });
    expect(m.node.id).toBe("n3");
  });

  test("a DNS name matches this machine's host name, short or full, ignoring case", () => {
    const ns = nodes(3).map((n, i) => ({ ...n, peer: `box${i + 1}.plant.example:7400` }));
    expect(findSelf(config(ns), { interfaces: {}, hostnames: ["BOX3"] }).node.id).toBe("n3");
    const full = findSelf(config(ns), { interfaces: {}, hostnames: ["box1.plant.example"] });
    expect(full.node.id).toBe("n1");
    expect(full.how).toBe("hostname");
    const short = nodes(2).map((n, i) => ({ ...n, peer: `box${i + 1}:7400` }));
    expect(findSelf(config(short), { interfaces: {}, hostnames: ["box2.plant.example"] }).node.id).toBe("n2");
  });

  test("full names in different domains do not match", () => {
    const ns = [{ ...nodes(1)[0]!, peer: "box1.a.example:7400" }];
    const e = caught(() => findSelf(config(ns), { interfaces: {}, hostnames: ["box1.b.example"] }));
    expect(e).toBeInstanceOf(SelfNotFoundError);
  });

  test("no match is SelfNotFoundError naming this machine's addresses and --id", () => {
    const e = caught(() => findSelf(config(nodes(3)), { interfaces: { eth0: [{ address: "192.168.1.9" }] }, hostnames: ["box9"] }));
    expect(e).toBeInstanceOf(SelfNotFoundError);
    expect((e as SelfNotFoundError).reason).toBe("noMatch");
    expect((e as Error).message).toBe(
      "cluster file /etc/cairn/cluster.json: no entry has a peer host of this machine (its addresses: 192.168.1.9; host name: box9); pass --id ID",
    );
  });

  test("a file with no nodes cannot say which this node is", () => {
    const e = caught(() => findSelf(config([]), { interfaces: BOX2, hostnames: ["box2"] }));
    expect((e as SelfNotFoundError).reason).toBe("noMatch");
    expect((e as Error).message).toContain("lists no nodes yet");
  });

  test("a local cluster with every node on 127.0.0.1 is ambiguous and asks for --id", () => {
    const ns = nodes(3).map((n, i) => ({ ...n, peer: `127.0.0.1:${7400 + 2 * i}`, api: `http://127.0.0.1:${7401 + 2 * i}` }));
    const e = caught(() => findSelf(config(ns), { interfaces: BOX2, hostnames: [] }));
    expect(e).toBeInstanceOf(SelfAmbiguousError);
    expect((e as SelfAmbiguousError).candidates).toEqual(["n1", "n2", "n3"]);
    expect((e as Error).message).toBe(
      "cluster file /etc/cairn/cluster.json: entries n1, n2, n3 all have a peer host of this machine (127.0.0.1); pass --id to say which one this node is",
    );
    // --id settles it.
    expect(findSelf(config(ns), { id: "n2", interfaces: BOX2 }).node.peerPort).toBe(7402);
  });

  test("localhost matches when the machine has a loopback address", () => {
    const ns = [{ ...nodes(1)[0]!, peer: "localhost:7400" }, nodes(2)[1]!];
    const m = findSelf(config(ns), { interfaces: { lo: [{ address: "127.0.0.1" }] }, hostnames: [] });
    expect(m.node.id).toBe("n1");
    expect(m.detail).toContain("loopback address 127.0.0.1");
    const e = caught(() => findSelf(config(ns), { interfaces: { eth0: [{ address: "10.9.9.9" }] }, hostnames: [] }));
    expect(e).toBeInstanceOf(SelfNotFoundError);
  });

  test("the defaults read this machine's real interfaces", () => {
    const ns = [{ ...nodes(1)[0]!, peer: "127.0.0.1:7400" }, nodes(2)[1]!];
    const hasLoopback = Object.values(networkInterfaces()).some((a) => a?.some((x) => x.address === "127.0.0.1"));
    if (hasLoopback) expect(findSelf(config(ns)).node.id).toBe("n1");
    else expect(() => findSelf(config(ns))).toThrow(SelfNotFoundError);
  });
});

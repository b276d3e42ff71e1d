/**
 * DNS SRV discovery against a real DNS server on loopback (test/helpers/dns.ts,
 * dns-packet over UDP): the lookup rule, and the poller's convergence rules
 * (a change is emitted; a vanished, empty or failing record never is).
 */
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { parseClusterText, type ClusterConfig } from "../../src/discovery/load.ts";
import { lookupSrv, SrvDiscovery } from "../../src/discovery/srv.ts";
import { join } from "node:path";
import { Logger } from "../../src/util/log.ts";
import { TestDns } from "../helpers/dns.ts";
import { waitFor } from "../helpers/ports.ts";

const NAME = "_cairn._tcp.store-42.test";
let dns: TestDns;

beforeAll(async () => {
  dns = await TestDns.start();
});
afterAll(async () => {
  await dns.close();
});

function setNodes(n: number): void {
  dns.srv.set(NAME.toLowerCase(), []);
  for (let i = 1; i <= n; i++) {
    const host = `n${i}.store-42.test`;
    dns.srv.get(NAME.toLowerCase())!.push({ port: 7400 + i, target: host });
    dns.txt.set(host, [`id=n${i} api=http://127.0.0.${i}:7500`]);
    dns.a.set(host, `127.0.0.${i}`);
  }
}

beforeEach(() => {
  dns.srv.clear();
  dns.txt.clear();
  dns.a.clear();
  dns.fail = false;
  setNodes(3);
});

function fileConfig(intervalMs = 100): ClusterConfig {
  const r = parseClusterText(JSON.stringify({ cluster: "store-42", discovery: { srv: NAME, server: dns.server, intervalMs } }), "/virtual/cluster.json");
  if (!r.ok) throw r.error;
  return r.config;
}

test("each SRV target is a node: peer = its A address and the SRV port, id and API from its TXT record", async () => {
  dns.txt.set("n2.store-42.test", ["id=n2", "api=http://127.0.0.2:7500", "role=learner"]); // several strings work too
  const a = await lookupSrv(fileConfig().discovery!);
  expect(a).toEqual({
    ok: true,
    nodes: [
      { id: "n1", peer: "127.0.0.1:7401", api: "http://127.0.0.1:7500" },
      { id: "n2", peer: "127.0.0.2:7402", api: "http://127.0.0.2:7500", role: "learner" },
      { id: "n3", peer: "127.0.0.3:7403", api: "http://127.0.0.3:7500" },
    ],
  });
});

test("a vanished record, an empty one, a failing server or a target without TXT is a failure with the reason", async () => {
  const d = fileConfig().discovery!;
  dns.txt.delete("n3.store-42.test");
  const noTxt = await lookupSrv(d);
  expect(!noTxt.ok && noTxt.reason).toContain("TXT record of SRV target n3.store-42.test");
  dns.srv.set(NAME.toLowerCase(), []);
  expect((await lookupSrv(d)).ok).toBe(false);
  dns.srv.clear();
  const gone = await lookupSrv(d);
  expect(!gone.ok && gone.reason).toContain(NAME);
  dns.fail = true;
  setNodes(3);
  expect((await lookupSrv(d)).ok).toBe(false);
});

test("the poller converges to a change in the record and never to a vanished, empty or invalid one", async () => {
  const seen: ClusterConfig[] = [];
  const problems: (string | null)[] = [];
  const logs: string[] = [];
  const disc = new SrvDiscovery({ log: new Logger({ level: "debug", sink: (l) => logs.push(l) }), onConfig: (c) => seen.push(c), onProblem: (p) => problems.push(p) });
  try {
    const file = fileConfig(100);
    const first = await disc.first(file, new Promise(() => {}));
    expect(first!.nodes.map((n) => n.id)).toEqual(["n1", "n2", "n3"]);
    disc.setFile(file);
    await waitFor("the first config", () => seen.length === 1);
    setNodes(4);
    await waitFor("4 nodes", () => seen.at(-1)?.nodes.length === 4);
    expect(seen.at(-1)!.nodes.map((n) => n.peer)).toEqual(["127.0.0.1:7401", "127.0.0.2:7402", "127.0.0.3:7403", "127.0.0.4:7404"]);
    const count = seen.length;
    dns.srv.set(NAME.toLowerCase(), []); // empty
    await waitFor("a problem for the empty record", () => problems.at(-1));
    dns.srv.clear(); // vanished
    const q = dns.queries;
    await waitFor("a few more polls", () => dns.queries > q + 6);
    setNodes(2);
    dns.txt.set("n2.store-42.test", ["id=n1 api=http://127.0.0.9:7500"]); // a duplicate id: refused by the file's checks
    await waitFor("the duplicate is reported", () => problems.at(-1)?.includes("duplicate id"));
    expect(seen.length).toBe(count);
    expect(problems.at(-1)).toContain("the last good set of nodes stays in force");
    setNodes(4);
    await waitFor("the problem is cleared", () => problems.at(-1) === null);
    expect(seen.length).toBe(count); // the same 4 nodes: nothing new to apply
  } finally {
    disc.close();
  }
});

test("a file without discovery is passed through as is and stops the polling", async () => {
  const seen: ClusterConfig[] = [];
  const disc = new SrvDiscovery({ log: new Logger({ level: "error", sink: () => {} }), onConfig: (c) => seen.push(c) });
  try {
    disc.setFile(fileConfig(100));
    await waitFor("nodes from DNS", () => seen.at(-1)?.nodes.length === 3);
    const r = parseClusterText(JSON.stringify({ cluster: "store-42", nodes: [{ id: "a", peer: "127.0.0.1:1", api: "http://127.0.0.1:2" }] }), "/virtual/cluster.json");
    if (!r.ok) throw r.error;
    disc.setFile(r.config);
    expect(seen.at(-1)!.nodes.map((n) => n.id)).toEqual(["a"]);
    const q = dns.queries;
    await Bun.sleep(200); // a bounded wait to see that nothing happens: no condition to poll for
    expect(dns.queries).toBe(q);
  } finally {
    disc.close();
  }
});

test("the lookup works the same under Deno (node:dns Resolver with setServers on a loopback port)", async () => {
  dns.txt.set("n2.store-42.test", ["id=n2", "api=http://127.0.0.2:7500"]); // strings split: Deno keeps them in one record
  const root = join(import.meta.dir, "..", "..");
  const child = Bun.spawn([join(root, "node_modules/.bin/deno"), "run", "-A", join(import.meta.dir, "deno-srv.ts"), NAME, dns.server], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect(code, err).toBe(0);
  expect(JSON.parse(out)).toEqual(await lookupSrv(fileConfig().discovery!));
  expect(JSON.parse(out).nodes.map((n: { id: string }) => n.id)).toEqual(["n1", "n2", "n3"]);
}, 60_000);

/**
 * DNS SRV discovery end to end (issue 12): three processes of dist/cairn
 * whose cluster file names an SRV record on a real DNS server on loopback
 * (test/helpers/dns.ts); a 4th node started before the record lists it
 * waits, and joins once the record gains it; then the record is emptied and
 * the cluster does not change; a record that drops a majority of the voters
 * is held.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { TestDns } from "../helpers/dns.ts";
import { waitFor } from "../helpers/ports.ts";
import { E2ECluster, type ClusterFileNode } from "./harness.ts";

let c: E2ECluster | undefined;
let dns: TestDns | undefined;
afterEach(async () => {
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, "srv"));
  await c?.close();
  await dns?.close();
  c = dns = undefined;
});

const NAME = "_cairn._tcp.store.test";

function publish(d: TestDns, nodes: ClusterFileNode[]): void {
  d.srv.set(NAME, nodes.map((n) => ({ port: Number(n.peer.split(":")[1]), target: `${n.id}.store.test` })));
  for (const n of nodes) {
    d.txt.set(`${n.id}.store.test`, [`id=${n.id} api=${n.api}`]);
    d.a.set(`${n.id}.store.test`, n.peer.split(":")[0]!);
  }
}

async function voters(cl: E2ECluster, among: string[]): Promise<string[]> {
  const st = await cl.status(await cl.leader(20_000, among));
  return st.members.filter((m: { role: string }) => m.role === "voter").map((m: { id: string }) => m.id).sort();
}

test("a cluster formed from SRV records follows a 4th node added to them and ignores an emptied record", async () => {
  dns = await TestDns.start();
  const cl = (c = await E2ECluster.init(4));
  const all = cl.readFile().nodes;
  for (const n of all) cl.api(n.id); // the harness remembers the API URLs: the file will not list them
  publish(dns, all.slice(0, 3));
  const srvFile = { ...cl.readFile(), founders: ["n1", "n2", "n3"], discovery: { srv: NAME, server: dns.server, intervalMs: 200 } } as Record<string, unknown>;
  delete srvFile.nodes;
  cl.writeFileAtomic(JSON.stringify(srvFile, null, 2));
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await waitFor("3 voters from DNS", async () => (await voters(cl, ["n1", "n2", "n3"]).catch(() => [])).join() === "n1,n2,n3", 30_000, 100);
  expect((await cl.post("n1", { a: 1 })).status).toBe(201);

  cl.start("n4"); // not in the record yet: it waits for DNS to list it
  await cl.waitLog("n4", "does not take part until");
  publish(dns, all);
  await waitFor("n4 becomes the 4th voter", async () => (await voters(cl, ["n1", "n2", "n3", "n4"]).catch(() => [])).join() === "n1,n2,n3,n4", 40_000, 100);

  dns.srv.set(NAME, []); // emptied: never converged to
  const leader = await cl.leader(20_000);
  await waitFor("the empty record is reported in /status", async () => {
    const st = await cl.status(leader);
    return (st.problems as string[]).some((p) => p.includes(NAME) && p.includes("last good set"));
  }, 10_000, 100);
  const q = dns.queries;
  await waitFor("several more polls", () => dns!.queries > q + 20, 10_000, 50);
  expect(await voters(cl, ["n1", "n2", "n3", "n4"])).toEqual(["n1", "n2", "n3", "n4"]);
  expect((await cl.post("n2", { a: 2 })).status).toBe(201);
  dns.srv.clear(); // vanished: the same
  await waitFor("more polls", () => dns!.queries > q + 40, 10_000, 50);
  expect(await voters(cl, ["n1", "n2", "n3", "n4"])).toEqual(["n1", "n2", "n3", "n4"]);

  // A record that drops 3 of the 4 voters is held like such a file edit (no allowShrink).
  publish(dns, all.slice(0, 1));
  const l2 = await cl.leader(20_000);
  await waitFor("the shrink is held, in /status", async () => ((await cl.status(l2)).problems as string[]).some((p) => p.startsWith("membership change held")), 10_000, 100);
  expect(await voters(cl, ["n1", "n2", "n3", "n4"])).toEqual(["n1", "n2", "n3", "n4"]);
}, 120_000);

/**
 * Certificates and what goes on which host (issue 8), end to end with
 * dist/cairn: the layout `cairn init` writes, a node added later with a bundle
 * from `cairn tls issue` and nothing else, certificates rotated under a write
 * load with no restart and no failed write, a bad rotated pair refused.
 */
import { afterEach, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";
import type { PeerTls } from "../../src/transport/context.ts";
import { waitFor } from "../helpers/ports.ts";
import { BINARY, E2ECluster, ensureBinary, expectFeedsAgree, Writer } from "./harness.ts";

let c: E2ECluster | undefined;
let w: Writer | undefined;
const temps: string[] = [];
let testNo = 0;
afterEach(async () => {
  await w?.stop(0);
  w = undefined;
  if (process.env.E2E_LOGS) c?.dumpLogs(join(process.env.E2E_LOGS, `tls-${++testNo}`));
  await c?.close();
  c = undefined;
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
});

function cairn(args: string[]): { status: number | null; stdout: string; stderr: string } {
  ensureBinary();
  return spawnSync(BINARY, args, { encoding: "utf8" });
}

/** Serial numbers compared without case or leading zeros (runtimes print them differently). */
const norm = (s: string) => s.toLowerCase().replace(/^0+/, "");
const fileSerial = (pem: string) => norm(new X509Certificate(pem).serialNumber);

/** The serial of the certificate a TLS server presents at host:port (`client` for servers that want one). */
function servedSerial(hostPort: string, client?: PeerTls): Promise<string> {
  const u = new URL(hostPort.includes("://") ? hostPort : `tls://${hostPort}`);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port), ...(client ?? {}), rejectUnauthorized: false, checkServerIdentity: () => undefined }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(norm(serial));
    });
    s.once("error", reject);
  });
}

function bundleSerial(cl: E2ECluster, id: string): string {
  return fileSerial(readFileSync(join(cl.dir, "tls", id, "node.pem"), "utf8"));
}

test("cairn init keeps the CA apart and writes one bundle per host: no bundle holds the CA key or another node's key; keys are 0600", () => {
  const dir = mkdtempSync(join(tmpdir(), "cairn-e2e-init-"));
  temps.push(dir);
  const r = cairn(["init", "--nodes", "3", "--dir", dir, "--base-port", String(20_000 + Math.floor(Math.random() * 30_000))]);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain("never copy it to a host");
  expect(readdirSync(dir).sort()).toEqual(["ca", "cluster.json", "tls", "tokens.json"]);
  expect(JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")).tls).toEqual({ ca: "tls/${id}/ca.pem", cert: "tls/${id}/node.pem", key: "tls/${id}/node.key" });
  const mode = (p: string) => statSync(p).mode & 0o777;
  expect(readdirSync(join(dir, "ca")).sort()).toEqual(["ca.key", "ca.pem"]);
  expect(mode(join(dir, "ca"))).toBe(0o700);
  expect(mode(join(dir, "ca", "ca.key"))).toBe(0o600);
  const caKey = readFileSync(join(dir, "ca", "ca.key"), "utf8");
  const keys = new Map<string, string>();
  for (const id of ["n1", "n2", "n3"]) {
    const b = join(dir, "tls", id);
    expect(readdirSync(b).sort()).toEqual(["ca.pem", "node.key", "node.pem"]);
    expect(mode(b)).toBe(0o700);
    expect(mode(join(b, "node.key"))).toBe(0o600);
    keys.set(id, readFileSync(join(b, "node.key"), "utf8"));
    expect(new X509Certificate(readFileSync(join(b, "node.pem"), "utf8")).subject).toBe(`CN=${id}`);
  }
  const all = [caKey, ...keys.values()];
  expect(new Set(all).size).toBe(all.length);
  // Usage errors exit 2; help explains the command.
  expect(cairn(["tls"]).status).toBe(2);
  expect(cairn(["tls", "issue", "--ca", join(dir, "ca")]).status).toBe(2);
  expect(cairn(["tls", "rotate", "--ca", join(dir, "ca"), "--id", "n9", "--out", join(dir, "tls", "n9")]).status).toBe(2);
  expect(cairn(["tls", "issue", "--ca", join(dir, "ca"), "--id", "n1", "--out", join(dir, "tls", "n1")]).status).toBe(2);
  const help = cairn(["help", "tls"]);
  expect(help.status).toBe(0);
  expect(help.stdout).toContain("cairn tls rotate");
});

test("a node added later with only cluster.json and its bundle from `cairn tls issue` joins; its 10-day certificate shows in /status, /metrics and the log", async () => {
  c = await E2ECluster.init(4);
  const cl = c;
  const all = cl.readFile().nodes;
  cl.editFile((f) => {
    f.nodes = all.slice(0, 3);
    f.founders = ["n1", "n2", "n3"];
  });
  rmSync(join(cl.dir, "tls", "n4"), { recursive: true });
  const issued = cairn(["tls", "issue", "--ca", join(cl.dir, "ca"), "--id", "n4", "--out", join(cl.dir, "tls", "n4"), "--days", "10"]);
  expect(issued.status).toBe(0);
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  // Host n4: the cluster file and tls/n4/, nothing else (no CA key, no other bundle).
  const host = join(cl.dir, "host-n4");
  mkdirSync(join(host, "tls"), { recursive: true });
  cpSync(join(cl.dir, "tls", "n4"), join(host, "tls", "n4"), { recursive: true });
  const f = cl.editFile((x) => x.nodes.push(all[3]!));
  writeFileSync(join(host, "cluster.json"), JSON.stringify(f, null, 2));
  expect(readdirSync(host).sort()).toEqual(["cluster.json", "tls"]);
  expect(readdirSync(join(host, "tls"))).toEqual(["n4"]);
  cl.start("n4", { config: join(host, "cluster.json") });
  await cl.waitVoters(4, 60_000);
  const ok = await cl.post("n4", { via: "n4" });
  expect(ok.status).toBe(201);
  const notAfter = new Date(new X509Certificate(readFileSync(join(host, "tls", "n4", "node.pem"), "utf8")).validTo).toISOString();
  const st = await cl.status("n4");
  const problem = (st.problems as string[]).find((p) => p.includes("node.pem"));
  expect(problem).toContain(join(host, "tls", "n4", "node.pem"));
  expect(problem).toContain(notAfter);
  expect((await cl.status("n1")).problems.some((p: string) => p.includes("expires"))).toBe(false);
  const metrics = await (await cl.get("n4", "/metrics")).text();
  const secs = Number(/cairn_tls_cert_expiry_seconds\{kind="cert",[^}]*\} (-?\d+)/.exec(metrics)?.[1]);
  expect(secs).toBeGreaterThan(9 * 86_400);
  expect(secs).toBeLessThan(10 * 86_400 + 60);
  const line = cl.logsMatching("n4", "expires on").find((l) => l.level === "warn");
  expect(String(line?.msg)).toContain(notAfter);
}, 120_000);

test("rotating all three nodes' certificates one by one under a write load fails no write; new API and peer connections present the new certificates and peers reconnect", async () => {
  c = await E2ECluster.init(3);
  const cl = c;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const probe = await cl.issueTls("n9");
  let via = ["n1", "n2", "n3"];
  w = new Writer(cl, { via: () => via, clients: 4 }).start();
  await w.more(20);
  for (const id of ["n1", "n2", "n3"]) {
    const before = bundleSerial(cl, id);
    expect(await servedSerial(cl.api(id))).toBe(before);
    const r = cairn(["tls", "rotate", "--ca", join(cl.dir, "ca"), "--id", id, "--out", join(cl.dir, "tls", id)]);
    expect(r.status).toBe(0);
    const after = bundleSerial(cl, id);
    expect(after).not.toBe(before);
    await waitFor(`${id}'s API to serve the new certificate`, async () => (await servedSerial(cl.api(id))) === after, 20_000, 50);
    await waitFor(`${id}'s peer port to present the new certificate`, async () => (await servedSerial(cl.peer(id), probe)) === after, 20_000, 50);
    await w.more(30);
  }
  // The claim: not one failed attempt while the certificates were rotated.
  expect([...w.failures.entries()]).toEqual([]);
  // New peer connections both ways with the rotated certificates: restart a follower (taken out of the
  // writer's list first: requests to a stopping node are refused, which is not what this checks); it rejoins.
  const leader = await cl.leader();
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  via = ["n1", "n2", "n3"].filter((id) => id !== follower);
  await cl.stop(follower);
  await w.more(20);
  cl.start(follower);
  await cl.waitLog(follower, "connected to peer", 20_000);
  await waitFor(`${follower} ready again`, async () => (await cl.get(follower, "/ready").catch(() => null))?.status === 200, 20_000, 50);
  via = ["n1", "n2", "n3"];
  await w.more(40);
  await w.stop();
  expect(w.unsettled.size).toBe(0);
  await expectFeedsAgree(cl, ["n1", "n2", "n3"], w);
  for (const id of ["n1", "n2", "n3"]) expect(cl.logsMatching(id, "refused the new TLS files")).toEqual([]);
}, 180_000);

test("a rotated pair that does not check out is refused with a log line and the node keeps its old certificate", async () => {
  c = await E2ECluster.init(3);
  const cl = c;
  for (const id of ["n1", "n2", "n3"]) cl.start(id);
  await cl.waitVoters(3);
  const before = bundleSerial(cl, "n2");
  const replace = (file: string, text: string) => {
    const p = join(cl.dir, "tls", "n2", file);
    writeFileSync(`${p}.tmp`, text, { mode: 0o600 });
    renameSync(`${p}.tmp`, p);
  };
  // Another node's key next to n2's certificate.
  replace("node.key", readFileSync(join(cl.dir, "tls", "n1", "node.key"), "utf8"));
  const line = await cl.waitLog("n2", "refused the new TLS files", 20_000);
  expect(String(line.msg)).toContain("key does not belong");
  expect(line.level).toBe("warn");
  // A pair from another CA.
  const other = await createCa({ commonName: "other CA", days: 10 });
  const foreign = await createNodeCert({ ca: other, nodeId: "n2", hosts: ["127.0.0.1"], days: 10 });
  replace("node.key", foreign.key);
  replace("node.pem", foreign.cert);
  await waitFor("the foreign pair refused", () => cl.logsMatching("n2", "not signed by the cluster CA").length > 0, 20_000, 50);
  expect(await servedSerial(cl.api("n2"))).toBe(before);
  expect((await cl.post("n2", { after: "refusal" })).status).toBe(201);
  // A good rotation afterwards is taken.
  cairn(["tls", "rotate", "--ca", join(cl.dir, "ca"), "--id", "n2", "--out", join(cl.dir, "tls", "n2"), "--host", "127.0.0.1"]);
  const after = bundleSerial(cl, "n2");
  await waitFor("n2 to serve the good rotated certificate", async () => (await servedSerial(cl.api("n2"))) === after, 20_000, 50);
  expect((await cl.post("n2", { after: "rotation" })).status).toBe(201);
}, 120_000);

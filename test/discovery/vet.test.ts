import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ClusterConfig, parseClusterText } from "../../src/discovery/load.ts";
import { tlsFileProblems } from "../../src/discovery/tlsfiles.ts";
import { vetReload } from "../../src/discovery/vet.ts";
import { type CertAndKey, createCa, createNodeCert } from "../../src/transport/certs.ts";
import { clusterJson, TempDirs } from "./helpers.ts";

const dirs = new TempDirs();
afterEach(() => dirs.cleanup());

let ca: CertAndKey;
let n1: CertAndKey;
beforeAll(async () => {
  ca = await createCa({ commonName: "test-ca", days: 2 });
  n1 = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1"], days: 2 });
});

/** A directory laid out as `cairn init` does (tls/${id}/...), with the files of n1. */
function bundleDir(): string {
  const dir = dirs.make();
  mkdirSync(join(dir, "tls", "n1"), { recursive: true });
  writeFileSync(join(dir, "tls", "n1", "ca.pem"), ca.cert);
  writeFileSync(join(dir, "tls", "n1", "node.pem"), n1.cert);
  writeFileSync(join(dir, "tls", "n1", "node.key"), n1.key, { mode: 0o600 });
  return dir;
}

const TLS = { ca: "tls/${id}/ca.pem", cert: "tls/${id}/node.pem", key: "tls/${id}/node.key" };

function config(dir: string, over: Record<string, unknown> = {}): ClusterConfig {
  const r = parseClusterText(clusterJson({ tls: TLS, ...over }), join(dir, "cluster.json"));
  if (!r.ok) throw r.error;
  return r.config;
}

const vet = (c: ClusterConfig, o: { tls?: boolean; cluster?: string } = {}) => vetReload(c, { selfId: "n1", cluster: o.cluster ?? "store-42", tls: o.tls ?? true });

describe("tlsFileProblems", () => {
  test("real PEM files of this node, found through ${id}: no problem", () => {
    const dir = bundleDir();
    expect(vet(config(dir))).toEqual([]);
  });

  test("a missing file names the field, the path after ${id} substitution, and what to do", () => {
    const dir = bundleDir();
    const c = config(dir, { tls: { ...TLS, cert: "tls/${id}/nope.pem" } });
    expect(vet(c)).toEqual([
      `tls.cert: ${join(dir, "tls", "n1", "nope.pem")}: no such file (ENOENT); fix the path in the cluster file's tls section or put the file there`,
    ]);
  });

  test("not PEM, the wrong kind of PEM, an encrypted key, a directory, a symlink loop, too large", () => {
    const dir = bundleDir();
    const p = (name: string) => join(dir, "tls", "n1", name);
    writeFileSync(p("garbage.pem"), "hello\n");
    writeFileSync(p("key-as-cert.pem"), n1.key);
    writeFileSync(p("enc.key"), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n");
    mkdirSync(p("dir.pem"));
    symlinkSync(p("loop2.pem"), p("loop1.pem"));
    symlinkSync(p("loop1.pem"), p("loop2.pem"));
    writeFileSync(p("big.pem"), Buffer.alloc((1 << 20) + 1, 65));
    const probs = tlsFileProblems({ ca: p("garbage.pem"), cert: p("key-as-cert.pem"), key: p("enc.key") });
    expect(probs).toEqual([
      `tls.ca: ${p("garbage.pem")}: is not PEM: no "-----BEGIN ...-----" / "-----END ...-----" block; expected a PEM certificate`,
      `tls.cert: ${p("key-as-cert.pem")}: holds no PEM certificate (found PRIVATE KEY)`,
      `tls.key: ${p("enc.key")}: is an encrypted private key; cairn needs it unencrypted (protect it with file permissions, 0600)`,
    ]);
    const more = tlsFileProblems({ ca: p("dir.pem"), cert: p("loop1.pem"), key: p("big.pem") });
    expect(more).toEqual([
      `tls.ca: ${p("dir.pem")}: is a directory, not a file`,
      `tls.cert: ${p("loop1.pem")}: a loop of symbolic links (ELOOP)`,
      `tls.key: ${p("big.pem")}: is ${(1 << 20) + 1} bytes, more than the ${1 << 20} a PEM file may have`,
    ]);
  });

  test("an unreadable file (mode 000) is a problem, unless running as root", () => {
    const dir = bundleDir();
    const key = join(dir, "tls", "n1", "node.key");
    chmodSync(key, 0o000);
    const probs = vet(config(dir));
    if (process.getuid?.() === 0) expect(probs).toEqual([]);
    else expect(probs).toEqual([`tls.key: ${key}: permission denied (EACCES); make it readable by the user running cairn`]);
  });
});

describe("vetReload", () => {
  test("a file with no nodes is refused by a running node", () => {
    const dir = bundleDir();
    expect(vet(config(dir, { nodes: [] }))).toEqual(["nodes: the file lists no nodes; a running cluster is never emptied by its file: list its nodes again"]);
  });

  test("another cluster's name is refused", () => {
    const dir = bundleDir();
    expect(vet(config(dir), { cluster: "other" })).toEqual([
      'cluster: the file now names cluster "store-42", but this node belongs to cluster "other"; put the name back, or copy this cluster\'s file',
    ]);
  });

  test("dropping the tls section is refused by a node that runs with TLS, fine for an --insecure one", () => {
    const dir = bundleDir();
    const r = parseClusterText(clusterJson(), join(dir, "cluster.json"));
    if (!r.ok) throw r.error;
    expect(vet(r.config)).toEqual([
      'tls: the file has no "tls" section, but this node runs with TLS (it could not start again with this file); put the section back',
    ]);
    expect(vet(r.config, { tls: false })).toEqual([]);
  });

  test("an --insecure node does not look at the TLS files", () => {
    const dir = dirs.make();
    expect(vet(config(dir), { tls: false })).toEqual([]);
    expect(vet(config(dir)).length).toBe(3);
  });
});

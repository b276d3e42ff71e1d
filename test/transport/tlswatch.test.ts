import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readCaDir, writeClusterBundles, writeNodeBundle } from "../../src/transport/bundle.ts";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";
import type { PeerTls } from "../../src/transport/context.ts";
import { checkPair } from "../../src/transport/pair.ts";
import { readTlsFiles, TlsWatch } from "../../src/transport/tlswatch.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { waitFor } from "../helpers/ports.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(days?: number) {
  const dir = await mkdtemp(join(tmpdir(), "cairn-tlswatch-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await writeClusterBundles(dir, ["n1", "n2"], ["127.0.0.1"]);
  const ca = await readCaDir(join(dir, "ca"));
  const out = join(dir, "tls", "n1");
  if (days) await writeNodeBundle({ ca, id: "n1", out, hosts: ["127.0.0.1"], days });
  const paths = { ca: join(out, "ca.pem"), cert: join(out, "node.pem"), key: join(out, "node.key") };
  const initial = await readTlsFiles(paths);
  const { log, lines } = memoryLogger();
  const changes: PeerTls[] = [];
  const watch = new TlsWatch({ paths, nodeId: "n1", logger: log, initial, initialFacts: await checkPair(initial, "n1"), onChange: (t) => void changes.push(t), pollMs: 50, debounceMs: 20 });
  watch.start();
  cleanups.push(() => watch.close());
  return { dir, ca, out, paths, watch, lines, changes };
}

async function replace(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

describe("TlsWatch", () => {
  test("a rotated bundle is handed on once; a bad pair is refused with one warn line and the pair in use stays", async () => {
    const t = await setup();
    // Another node's key next to n1's certificate: refused.
    await replace(t.paths.key, await readFile(join(t.dir, "tls", "n2", "node.key"), "utf8"));
    await waitFor("the refusal", () => t.lines.some((l) => l.includes("refused the new TLS files") && l.includes("key does not belong")), 5000);
    // A pair from another CA: refused too, the CA has not changed either.
    const other = await createCa({ commonName: "other", days: 5 });
    const foreign = await createNodeCert({ ca: other, nodeId: "n1", hosts: [], days: 5 });
    await replace(t.paths.key, foreign.key);
    await replace(t.paths.cert, foreign.cert);
    await waitFor("the second refusal", () => t.lines.some((l) => l.includes("not signed by the cluster CA")), 5000);
    expect(t.changes).toHaveLength(0);
    expect(t.lines.filter((l) => l.includes("refused")).every((l) => JSON.parse(l).level === "warn")).toBe(true);
    // A good rotation is taken.
    await writeNodeBundle({ ca: t.ca, id: "n1", out: t.out, hosts: ["127.0.0.1"] });
    await waitFor("the rotated pair", () => t.changes.length === 1, 5000);
    expect(t.changes[0]!.cert).toBe(await readFile(t.paths.cert, "utf8"));
    // Rewriting the same bytes hands nothing on.
    await replace(t.paths.cert, t.changes[0]!.cert);
    await t.watch.check();
    expect(t.changes).toHaveLength(1);
  });

  test("a certificate that expires in 10 days is a problem and a metric; a fresh rotation clears the problem", async () => {
    const t = await setup(10);
    expect(t.watch.problems()).toHaveLength(1);
    expect(t.watch.problems()[0]).toContain(t.paths.cert);
    expect(t.watch.metricsText()).toContain('cairn_tls_cert_expiry_seconds{kind="cert"');
    expect(t.lines.some((l) => JSON.parse(l).level === "warn" && l.includes("expires on"))).toBe(true);
    await writeNodeBundle({ ca: t.ca, id: "n1", out: t.out, hosts: ["127.0.0.1"] });
    await waitFor("the rotated pair", () => t.changes.length === 1, 5000);
    expect(t.watch.problems()).toEqual([]);
  });
});

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readCaDir, writeClusterBundles, writeNodeBundle } from "../../src/transport/bundle.ts";
import { CertParamsError } from "../../src/transport/certs.ts";
import { checkPair } from "../../src/transport/pair.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "cairn-bundle-"));
  dirs.push(d);
  return d;
}

const mode = async (p: string) => (await stat(p)).mode & 0o777;
const read = (p: string) => readFile(p, "utf8");

describe("certificate bundles", () => {
  test("writeClusterBundles keeps the CA apart and gives each node a bundle of its CA certificate, certificate and key only", async () => {
    const dir = await tempDir();
    await writeClusterBundles(dir, ["n1", "n2", "n3"], ["127.0.0.1", "localhost"]);
    expect((await readdir(join(dir, "ca"))).sort()).toEqual(["ca.key", "ca.pem"]);
    expect(await mode(join(dir, "ca"))).toBe(0o700);
    expect(await mode(join(dir, "ca", "ca.key"))).toBe(0o600);
    expect((await readdir(join(dir, "tls"))).sort()).toEqual(["n1", "n2", "n3"]);
    const caKey = await read(join(dir, "ca", "ca.key"));
    const keys = new Set<string>([caKey]);
    for (const id of ["n1", "n2", "n3"]) {
      const b = join(dir, "tls", id);
      expect((await readdir(b)).sort()).toEqual(["ca.pem", "node.key", "node.pem"]);
      expect(await mode(b)).toBe(0o700);
      expect(await mode(join(b, "node.key"))).toBe(0o600);
      const key = await read(join(b, "node.key"));
      expect(keys.has(key)).toBe(false); // not the CA key, not another node's key
      keys.add(key);
      expect(await read(join(b, "ca.pem"))).toBe(await read(join(dir, "ca", "ca.pem")));
      await checkPair({ ca: await read(join(b, "ca.pem")), cert: await read(join(b, "node.pem")), key }, id);
    }
    await expect(writeClusterBundles(await tempDir(), ["n1", "n1"], [])).rejects.toBeInstanceOf(CertParamsError);
  });

  test("writeNodeBundle over an existing bundle replaces the pair with a new serial and leaves no temporary files", async () => {
    const dir = await tempDir();
    await writeClusterBundles(dir, ["n1"], ["127.0.0.1"]);
    const ca = await readCaDir(join(dir, "ca"));
    const out = join(dir, "tls", "n1");
    const before = await checkPair({ ca: ca.cert, cert: await read(join(out, "node.pem")), key: await read(join(out, "node.key")) }, "n1");
    await writeNodeBundle({ ca, id: "n1", out, hosts: ["127.0.0.1"], days: 10 });
    const after = await checkPair({ ca: ca.cert, cert: await read(join(out, "node.pem")), key: await read(join(out, "node.key")) }, "n1");
    expect(after.serial).not.toBe(before.serial);
    expect((await readdir(out)).sort()).toEqual(["ca.pem", "node.key", "node.pem"]);
    expect(await mode(join(out, "node.key"))).toBe(0o600);
  });

  test("readCaDir names the missing file", async () => {
    const dir = await tempDir();
    await expect(readCaDir(join(dir, "nope"))).rejects.toThrow(/cannot read the CA certificate .*nope\/ca.pem/);
  });
});

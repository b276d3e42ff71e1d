/**
 * The certificate files on disk.
 *
 *   DIR/ca/ca.pem, DIR/ca/ca.key   the cluster CA: stays on the operator's
 *                                  machine, never copied to a host
 *   DIR/tls/<id>/ca.pem            the CA certificate (no key)
 *   DIR/tls/<id>/node.pem          node <id>'s certificate
 *   DIR/tls/<id>/node.key          node <id>'s key
 *
 * A host gets only its own bundle, so no host holds the CA key or another
 * node's key. Keys are mode 0600 and the directories that hold keys 0700.
 * Every file is written atomically (a temporary file in the same directory,
 * synced, then renamed over), so a running node watching its bundle never
 * reads half a file.
 */
import { chmod, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CA_DAYS_DEFAULT, CertParamsError, createCa, createNodeCert, NODE_CERT_DAYS_DEFAULT, type CertAndKey } from "./certs.ts";

/** File names inside a node's bundle directory; the cluster file's tls section points at them. */
export const BUNDLE_FILES = { ca: "ca.pem", cert: "node.pem", key: "node.key" } as const;
/** File names inside the CA directory. */
export const CA_FILES = { cert: "ca.pem", key: "ca.key" } as const;
/** The tls section `cairn init` writes: the same cluster file works for every host. */
export const CLUSTER_TLS_SECTION = {
  ca: `tls/\${id}/${BUNDLE_FILES.ca}`,
  cert: `tls/\${id}/${BUNDLE_FILES.cert}`,
  key: `tls/\${id}/${BUNDLE_FILES.key}`,
} as const;
/** PEM files larger than this are refused when read back (a CA file is a few hundred bytes). */
export const PEM_BYTES_MAX = 64 * 1024;

export interface BundlePaths {
  readonly dir: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Writes `data` to `path` atomically with `mode` (applied after the umask too). */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${crypto.randomUUID().slice(0, 8)}`);
  const fh = await open(tmp, "wx", mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
}

/** A directory that holds keys: created if missing, mode 0700 either way. */
async function keyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Makes a new CA in `caDir` (ca.pem, ca.key). */
export async function writeCaDir(caDir: string, days = CA_DAYS_DEFAULT): Promise<CertAndKey> {
  await keyDir(caDir);
  const ca = await createCa({ commonName: "cairn cluster CA", days });
  await writeFileAtomic(join(caDir, CA_FILES.key), ca.key, 0o600);
  await writeFileAtomic(join(caDir, CA_FILES.cert), ca.cert, 0o644);
  return ca;
}

async function readPem(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new CertParamsError(`cannot read the ${what} ${path}: ${(e as Error).message}; pass the directory cairn init wrote (DIR/ca)`);
  }
  if (text.length > PEM_BYTES_MAX) throw new CertParamsError(`the ${what} ${path} is ${text.length} bytes, over ${PEM_BYTES_MAX}: is it the right file?`);
  return text;
}

/** Reads the CA (certificate and key) from `caDir`. */
export async function readCaDir(caDir: string): Promise<CertAndKey> {
  return { cert: await readPem(join(caDir, CA_FILES.cert), "CA certificate"), key: await readPem(join(caDir, CA_FILES.key), "CA key") };
}

/**
 * Issues a certificate for `id` and writes its bundle to `out` (ca.pem,
 * node.pem, node.key). Over an existing bundle this is a rotation: each file
 * is replaced atomically, the key first, then the certificate.
 */
export async function writeNodeBundle(o: {
  ca: CertAndKey;
  id: string;
  out: string;
  hosts: readonly string[];
  days?: number;
}): Promise<BundlePaths> {
  const node = await createNodeCert({ ca: o.ca, nodeId: o.id, hosts: o.hosts, days: o.days ?? NODE_CERT_DAYS_DEFAULT });
  await keyDir(o.out);
  const paths = { dir: o.out, ca: join(o.out, BUNDLE_FILES.ca), cert: join(o.out, BUNDLE_FILES.cert), key: join(o.out, BUNDLE_FILES.key) };
  await writeFileAtomic(paths.key, node.key, 0o600);
  await writeFileAtomic(paths.cert, node.cert, 0o644);
  await writeFileAtomic(paths.ca, o.ca.cert, 0o644);
  return paths;
}

/**
 * What `cairn init` writes: a new CA in DIR/ca and a bundle per node id in
 * DIR/tls/<id>. Every node certificate lists all `hosts` in its SAN.
 */
export async function writeClusterBundles(dir: string, nodeIds: readonly string[], hosts: readonly string[]): Promise<{ caDir: string; bundles: BundlePaths[] }> {
  if (new Set(nodeIds).size !== nodeIds.length) {
    throw new CertParamsError(`node ids ${JSON.stringify(nodeIds)} contain duplicates: each node needs its own id`);
  }
  const caDir = join(dir, "ca");
  const ca = await writeCaDir(caDir);
  await keyDir(join(dir, "tls"));
  const bundles: BundlePaths[] = [];
  for (const id of nodeIds) bundles.push(await writeNodeBundle({ ca, id, out: join(dir, "tls", id), hosts }));
  return { caDir, bundles };
}

/**
 * Certificates for the peer transport (and the API): one cluster CA and one
 * certificate per node, ECDSA P-256, made with @peculiar/x509 over WebCrypto so
 * the same code runs under Bun and Deno without OpenSSL on the host.
 *
 * A node's identity is its certificate's common name (CN = node id); the
 * transport checks it against the node id a peer claims in its hello. Node
 * certificates carry serverAuth and clientAuth because every node is both a
 * TLS server (inbound peers) and a TLS client (outbound peers). The subject
 * alternative names list the node's hosts so that ordinary TLS clients (curl
 * against the HTTPS API) can verify them too.
 */
import type * as X509 from "@peculiar/x509";
import { loadX509 } from "./x509.ts";
import { isIP } from "node:net";

/** A certificate and its private key, both PEM (the key is PKCS#8). */
export interface CertAndKey {
  readonly cert: string;
  readonly key: string;
}

/** Node ids become file names and CNs: keep them to a safe alphabet. */
const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Certificates may not outlive this; also rejects nonsense like 1e9 days. */
const CERT_DAYS_MAX = 36500;
/** notBefore is set this far in the past so a peer whose clock is behind accepts a fresh cert. */
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

const EC_KEY_ALG: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const EC_SIGN_ALG: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** A certificate request that cannot be honoured (bad node id, host or validity). */
export class CertParamsError extends Error {
  override name = "CertParamsError";
}

function checkDays(days: number): void {
  if (!Number.isInteger(days) || days < 1 || days > CERT_DAYS_MAX) {
    throw new CertParamsError(`certificate validity of ${days} days is invalid: use a whole number from 1 to ${CERT_DAYS_MAX}`);
  }
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * DAY_MS) };
}

/** A random positive 128-bit serial (RFC 5280 allows up to 20 octets; top bit clear keeps it positive). */
function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f | 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function generateKeys(): Promise<CryptoKeyPair> {
  // extractable: the private key is exported once to PEM, then the CryptoKey is dropped.
  return (await crypto.subtle.generateKey(EC_KEY_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const x509 = await loadX509();
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  const x509 = await loadX509();
  let der: ArrayBuffer;
  try {
    der = x509.PemConverter.decodeFirst(pem);
  } catch (e) {
    throw new CertParamsError(`CA key is not PEM (${(e as Error).message}): pass the PKCS#8 key written by createCa`);
  }
  return crypto.subtle.importKey("pkcs8", der, EC_KEY_ALG, false, ["sign"]);
}

/** Makes a self-signed cluster CA valid for `days` days. */
export async function createCa(opts: { commonName: string; days: number }): Promise<CertAndKey> {
  checkDays(opts.days);
  const x509 = await loadX509();
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [opts.commonName] }],
    ...validity(opts.days),
    keys,
    signingAlgorithm: EC_SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await exportKeyPem(keys.privateKey) };
}

function sanFor(hosts: readonly string[]): X509.JsonGeneralName[] {
  return hosts.map((h) => {
    // "[::1]" as written in host:port strings is the IPv6 address ::1.
    const host = h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
    if (host === "") throw new CertParamsError("empty host name in the certificate's host list");
    return isIP(host) !== 0 ? { type: "ip", value: host } : { type: "dns", value: host };
  });
}

/**
 * Makes a certificate for node `nodeId` signed by `ca`: CN = nodeId, SAN =
 * `hosts` (IP addresses and DNS names), usable as TLS server and client.
 */
export async function createNodeCert(opts: {
  ca: CertAndKey;
  nodeId: string;
  hosts: readonly string[];
  days: number;
}): Promise<CertAndKey> {
  if (!NODE_ID_RE.test(opts.nodeId)) {
    throw new CertParamsError(`node id ${JSON.stringify(opts.nodeId)} is invalid: use 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)`);
  }
  checkDays(opts.days);
  const x509 = await loadX509();
  const caCert = new x509.X509Certificate(opts.ca.cert);
  const caKey = await importKeyPem(opts.ca.key);
  const keys = await generateKeys();
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
  ];
  if (opts.hosts.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sanFor(opts.hosts)));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [opts.nodeId] }],
    issuer: caCert.subjectName,
    ...validity(opts.days),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: EC_SIGN_ALG,
    extensions,
  });
  return { cert: cert.toString("pem"), key: await exportKeyPem(keys.privateKey) };
}

/** Validity of what `cairn init` writes: the CA ten years, node certificates five. */
export const CA_DAYS_DEFAULT = 3650;
export const NODE_CERT_DAYS_DEFAULT = 1825;

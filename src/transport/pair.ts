/**
 * Checks a node's TLS material before it is used: the certificate parses, the
 * key is the certificate's (a signature made with the key verifies with the
 * certificate's public key), the cluster CA signed it, and its CN is the node
 * id. Used at start-up and for every rotated pair a running node sees; a pair
 * that fails any check is refused and the old one stays in use.
 */
import type * as X509 from "@peculiar/x509";
import { loadX509 } from "./x509.ts";
import type { PeerTls } from "./context.ts";

/** The facts about a checked pair that the node reports (expiry warnings, metrics, logs). */
export interface PairFacts {
  /** Hex serial of the node certificate (lower case, as @peculiar/x509 gives it). */
  readonly serial: string;
  readonly certNotAfter: Date;
  readonly caNotAfter: Date;
  /** Hex serial of the CA certificate: a rotated pair must keep the CA (rotating the CA is not supported). */
  readonly caSerial: string;
}

/** A TLS pair that cannot be used, with what is wrong. */
export class BadTlsPairError extends Error {
  override name = "BadTlsPairError";
}

const EC_SIGN_ALG: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const EC_KEY_ALG: EcKeyImportParams = { name: "ECDSA", namedCurve: "P-256" };

async function parseCert(x509: typeof X509, pem: string, what: string): Promise<X509.X509Certificate> {
  try {
    return new x509.X509Certificate(pem);
  } catch (e) {
    throw new BadTlsPairError(`the ${what} is not a PEM certificate (${(e as Error).message})`);
  }
}

async function importKey(x509: typeof X509, pem: string): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(pem), EC_KEY_ALG, false, ["sign"]);
  } catch (e) {
    throw new BadTlsPairError(`the key is not a PEM PKCS#8 P-256 key (${(e as Error).message})`);
  }
}

/** Whether `key` is the private half of `cert`'s public key: sign with one, verify with the other. */
async function keyMatches(cert: X509.X509Certificate, key: CryptoKey): Promise<boolean> {
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const sig = await crypto.subtle.sign(EC_SIGN_ALG, key, probe);
  const pub = await cert.publicKey.export(EC_KEY_ALG, ["verify"]);
  return crypto.subtle.verify(EC_SIGN_ALG, pub, sig, probe);
}

/** Checks `tls` for node `nodeId`; throws BadTlsPairError saying what is wrong. */
export async function checkPair(tls: PeerTls, nodeId: string): Promise<PairFacts> {
  const x509 = await loadX509();
  const ca = await parseCert(x509, tls.ca, "CA file");
  const cert = await parseCert(x509, tls.cert, "certificate file");
  const key = await importKey(x509, tls.key);
  if (!(await keyMatches(cert, key).catch(() => false))) {
    throw new BadTlsPairError("the key does not belong to the certificate: write the key that was issued with it");
  }
  if (!(await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }).catch(() => false))) {
    throw new BadTlsPairError(`the certificate (issuer ${cert.issuer}) is not signed by the cluster CA (${ca.subject}): issue it with this cluster's CA`);
  }
  const cns = cert.subjectName.getField("CN");
  if (cns.length !== 1 || cns[0] !== nodeId) {
    throw new BadTlsPairError(`the certificate is for ${JSON.stringify(cns)}, not for node ${nodeId}: issue one with --id ${nodeId}`);
  }
  return { serial: cert.serialNumber.toLowerCase(), certNotAfter: cert.notAfter, caNotAfter: ca.notAfter, caSerial: ca.serialNumber.toLowerCase() };
}

/** The SAN entries (DNS names and IP addresses) of a PEM certificate, to reissue it for the same hosts. */
export async function certHosts(pem: string): Promise<string[]> {
  const x509 = await loadX509();
  const cert = new x509.X509Certificate(pem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return [];
  return san.names.items.filter((n) => n.type === "dns" || n.type === "ip").map((n) => n.value);
}

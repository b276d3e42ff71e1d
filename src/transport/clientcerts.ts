/**
 * API client certificates: signed by a CA the API is told to trust
 * (`cairn serve --api-client-ca`), naming the caller (CN) and its role as a
 * SAN URI `cairn:role:read|write|admin` (and the OU, for tools that show
 * only the subject). Usable as TLS client only (clientAuth), so one cannot
 * serve as a node.
 */
import { loadX509 } from "./x509.ts";
import { CertParamsError, type CertAndKey } from "./certs.ts";

export type ClientRole = "read" | "write" | "admin";
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CERT_DAYS_MAX = 36500;
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const EC_KEY_ALG: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const EC_SIGN_ALG: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

export async function createClientCert(opts: { ca: CertAndKey; name: string; role: ClientRole; days: number }): Promise<CertAndKey> {
  if (!NAME_RE.test(opts.name)) throw new CertParamsError(`client name ${JSON.stringify(opts.name)} is invalid: use 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)`);
  if (!["read", "write", "admin"].includes(opts.role)) throw new CertParamsError(`role ${JSON.stringify(opts.role)} is invalid: use read, write or admin`);
  if (!Number.isInteger(opts.days) || opts.days < 1 || opts.days > CERT_DAYS_MAX) {
    throw new CertParamsError(`certificate validity of ${opts.days} days is invalid: use a whole number from 1 to ${CERT_DAYS_MAX}`);
  }
  const x509 = await loadX509();
  let caCert: InstanceType<typeof x509.X509Certificate>;
  let caKey: CryptoKey;
  try {
    caCert = new x509.X509Certificate(opts.ca.cert);
    caKey = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(opts.ca.key), EC_KEY_ALG, false, ["sign"]);
  } catch (e) {
    throw new CertParamsError(`the CA certificate or key cannot be read (${(e as Error).message}): pass the ca.pem and ca.key that cairn init wrote`);
  }
  const keys = (await crypto.subtle.generateKey(EC_KEY_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: Array.from(serial, (b) => b.toString(16).padStart(2, "0")).join(""),
    subject: [{ CN: [opts.name] }, { OU: [opts.role] }],
    issuer: caCert.subjectName,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + opts.days * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: EC_SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: `cairn:role:${opts.role}` }]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  const der = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert: cert.toString("pem"), key: x509.PemConverter.encode(der, "PRIVATE KEY") };
}

/**
 * The role a verified API client certificate names: a SAN URI
 * `cairn:role:read|write|admin` (what `cairn tls client --role R` writes),
 * or, failing that, the subject's OU when it is exactly a role name.
 * Several different roles in one certificate name none (refused, not the
 * highest). Parsed once per distinct certificate (a bounded cache).
 */
import type { X509Module } from "../transport/x509.ts";
import { loadX509 } from "../transport/x509.ts";
import { type ClientCert, roleFromUris } from "./auth.ts";
import type { Role } from "./tokens.ts";

const CACHE_MAX = 1024;

export type ClientCertReader = (der: Uint8Array | null) => ClientCert | null;

/** A reader of DER certificates into ClientCert (null for none). */
export async function clientCertReader(): Promise<ClientCertReader> {
  const x509 = await loadX509();
  const cache = new Map<string, ClientCert>();
  return (der) => {
    if (der === null) return null;
    const key = Buffer.from(der).toString("base64");
    const hit = cache.get(key);
    if (hit) return hit;
    const cert = readCert(x509, der);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(key, cert);
    return cert;
  };
}

function readCert(x509: X509Module, der: Uint8Array): ClientCert {
  let c: InstanceType<X509Module["X509Certificate"]>;
  try {
    c = new x509.X509Certificate(new Uint8Array(der) as Uint8Array<ArrayBuffer>);
  } catch {
    return { role: null, name: "(unreadable certificate)" };
  }
  const name = c.subjectName.getField("CN")[0] ?? c.subject;
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san ? san.names.items.filter((n) => n.type === "url").map((n) => n.value) : [];
  const fromUri = roleFromUris(uris);
  if (fromUri !== null || uris.some((u) => u.startsWith("cairn:role:"))) return { role: fromUri, name };
  const ous = c.subjectName.getField("OU");
  const roles = new Set(ous.filter((o): o is Role => o === "read" || o === "write" || o === "admin"));
  return { role: roles.size === 1 ? [...roles][0]! : null, name };
}

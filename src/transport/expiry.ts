/**
 * Certificate expiry: which certificates end soon (a /status problem, a log
 * line) and how long each has left (a /metrics gauge). Pure: the caller
 * passes the time.
 */

/** Certificates that end within this many days are reported. */
export const EXPIRY_WARN_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface CertExpiry {
  /** "cert" (this node's certificate) or "ca" (the cluster CA). */
  readonly kind: "cert" | "ca";
  readonly file: string;
  readonly notAfter: Date;
}

/** One problem line per certificate that has ended or ends within warnDays. */
export function expiryProblems(certs: readonly CertExpiry[], nowMs: number, warnDays = EXPIRY_WARN_DAYS): string[] {
  const out: string[] = [];
  for (const c of certs) {
    const leftMs = c.notAfter.getTime() - nowMs;
    if (leftMs > warnDays * DAY_MS) continue;
    const what = c.kind === "ca" ? "the cluster CA certificate" : "this node's certificate";
    const when = c.notAfter.toISOString();
    out.push(
      leftMs <= 0
        ? `${what} ${c.file} expired on ${when}: issue a new one (cairn tls rotate)`
        : `${what} ${c.file} expires on ${when} (in ${Math.ceil(leftMs / DAY_MS)} days): rotate it (cairn tls rotate)`,
    );
  }
  return out;
}

function labelValue(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Prometheus text: cairn_tls_cert_expiry_seconds{kind, file}, negative once expired. */
export function expiryMetrics(certs: readonly CertExpiry[], nowMs: number): string {
  if (certs.length === 0) return "";
  let out = "# HELP cairn_tls_cert_expiry_seconds Seconds until the certificate expires (negative: expired).\n# TYPE cairn_tls_cert_expiry_seconds gauge\n";
  for (const c of certs) {
    const s = Math.round((c.notAfter.getTime() - nowMs) / 1000);
    out += `cairn_tls_cert_expiry_seconds{kind="${c.kind}",file="${labelValue(c.file)}"} ${s}\n`;
  }
  return out;
}

/**
 * A check that a node's TLS files can be used: each exists, is a regular
 * file (a symlink to one is fine), is readable, is at most
 * TLS_FILE_BYTES_MAX, and holds a PEM block of the right kind: a
 * certificate in `ca` and `cert`, an unencrypted private key in `key`.
 * Used at start (a bad file stops `serve` with exit 2) and on every reload
 * (a file naming bad TLS files is ignored, the last good version stays), so
 * that a typo in a path fails now and not at the next restart.
 *
 * It does not check that the certificate and key belong together or who
 * signed them: the TLS layer does, when it uses them.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import type { TlsPaths } from "./schema.ts";

/** A PEM certificate or key larger than this is not one (a CA bundle of 100 certificates is ~200 KB). */
export const TLS_FILE_BYTES_MAX = 1 << 20;

const PEM_BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/g;

type Want = "certificate" | "key";

/** Problems with the files of `tls` (one line each, naming the file); empty when all are usable. */
export function tlsFileProblems(tls: TlsPaths): string[] {
  const out: string[] = [];
  for (const [field, want] of [["ca", "certificate"], ["cert", "certificate"], ["key", "key"]] as const) {
    const p = fileProblem(tls[field], want);
    if (p) out.push(`tls.${field}: ${tls[field]}: ${p}`);
  }
  return out;
}

function fileProblem(path: string, want: Want): string | null {
  let text: string;
  try {
    const st = statSync(path);
    if (st.isDirectory()) return "is a directory, not a file";
    if (!st.isFile()) return "is not a regular file";
    if (st.size > TLS_FILE_BYTES_MAX) return `is ${st.size} bytes, more than the ${TLS_FILE_BYTES_MAX} a PEM file may have`;
    text = readBounded(path);
  } catch (e) {
    return readProblem(e);
  }
  return pemProblem(text, want);
}

function readBounded(path: string): string {
  const fd = openSync(path, "r");
  try {
    const buf = new Uint8Array(TLS_FILE_BYTES_MAX + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0 || (n += got) === buf.length) break;
    }
    return new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

function readProblem(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === "ENOENT") return "no such file (ENOENT); fix the path in the cluster file's tls section or put the file there";
  if (code === "EACCES" || code === "EPERM") return `permission denied (${code}); make it readable by the user running cairn`;
  if (code === "ELOOP") return "a loop of symbolic links (ELOOP)";
  return `cannot read it: ${e instanceof Error ? e.message : String(e)}`;
}

function pemProblem(text: string, want: Want): string | null {
  const labels = [...text.matchAll(PEM_BLOCK_RE)].map((m) => m[1] ?? "");
  if (labels.length === 0) return `is not PEM: no "-----BEGIN ...-----" / "-----END ...-----" block; expected a PEM ${want}`;
  if (want === "certificate") {
    return labels.includes("CERTIFICATE") ? null : `holds no PEM certificate (found ${labels.join(", ")})`;
  }
  if (labels.includes("ENCRYPTED PRIVATE KEY")) return "is an encrypted private key; cairn needs it unencrypted (protect it with file permissions, 0600)";
  return labels.some((l) => /^(RSA |EC )?PRIVATE KEY$/.test(l)) ? null : `holds no PEM private key (found ${labels.join(", ")})`;
}

/**
 * Why a request failed when the connection closed or reset: an http:// URL
 * aimed at an HTTPS port gets a closed connection from Bun and a TLS alert
 * from Deno, an https:// URL aimed at a plain HTTP port fails the handshake.
 * Neither error says so; a second, small probe of the port does: it tries
 * the other scheme and, when that one answers, says to fix the URL.
 */
import * as net from "node:net";
import * as tls from "node:tls";

const PROBE_MS = 2000;

/** "use https://..." when the port speaks the other scheme than the URL's; "" when it does not (or does not answer). */
export async function schemeHint(url: string): Promise<string> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "";
  }
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  if (u.protocol === "http:" && (await speaksTls(host, port))) {
    return `the port speaks HTTPS, not plain HTTP: check http vs https in the URL (use https://${u.host}, with --ca or --config for the cluster CA)`;
  }
  if (u.protocol === "https:" && (await speaksPlainHttp(host, port))) {
    return `the port speaks plain HTTP, not HTTPS: check http vs https in the URL (use http://${u.host})`;
  }
  return "";
}

/** True when a TLS handshake completes (the certificate is not checked: this only asks which protocol the port speaks). */
function speaksTls(host: string, port: number): Promise<boolean> {
  return probe((done) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, ...(net.isIP(host) ? {} : { servername: host }) });
    s.once("secureConnect", () => done(true));
    s.once("error", () => done(false));
    s.once("close", () => done(false));
    return s;
  });
}

/** True when the port answers a plain HTTP request with an HTTP status line. */
function speaksPlainHttp(host: string, port: number): Promise<boolean> {
  return probe((done) => {
    const s = net.connect({ host, port });
    let got = "";
    s.once("connect", () => s.write(`HEAD / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    s.on("data", (d: Uint8Array) => {
      got += new TextDecoder().decode(d);
      if (got.length >= 5) done(got.startsWith("HTTP/"));
    });
    s.once("error", () => done(false));
    s.once("close", () => done(got.startsWith("HTTP/")));
    return s;
  });
}

/** Runs one probe socket to its first answer, bounded by PROBE_MS; the socket is always destroyed. */
function probe(start: (done: (v: boolean) => void) => net.Socket): Promise<boolean> {
  return new Promise((resolve) => {
    let socket: net.Socket | undefined;
    let settled = false;
    const done = (v: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Deferred: done() may run inside start(), before `socket` is assigned.
      queueMicrotask(() => socket?.destroy());
      resolve(v);
    };
    const timer = setTimeout(() => done(false), PROBE_MS);
    socket = start(done);
  });
}

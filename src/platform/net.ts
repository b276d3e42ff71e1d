/**
 * The differences between Bun's and Deno's node:net / node:tls that the peer
 * transport has to paper over (both implement node:tls; neither is Node):
 *
 * - tls.Server "connection" event: Bun hands out the TLSSocket itself (the
 *   same object later given to "secureConnection"); Deno hands out the plain
 *   net.Socket underneath, and the TLSSocket points to it as `_parent`.
 *   `rawSocketOf` maps a TLSSocket to whichever object "connection" gave.
 * - "tlsClientError": under Deno the TLSSocket has no remoteAddress; the
 *   address is on `_parent`. Under Bun it is on the socket.
 * - A failed or timed-out TLS handshake ("tlsClientError", including the
 *   `handshakeTimeout` one) does NOT destroy the socket in either runtime
 *   (Node does), so the caller must destroy it.
 * - getPeerCertificate() works in both (Bun: BoringSSL, Deno: rustls) and
 *   returns the subject as an object with CN; a certificate with several CN
 *   attributes gives an array, which we refuse as ambiguous.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";

interface WithParent {
  _parent?: unknown;
}

/** The socket object a tls.Server "connection" event handed out for this TLSSocket. */
export function rawSocketOf(socket: TLSSocket): Socket {
  const parent = (socket as unknown as WithParent)._parent;
  return parent !== null && typeof parent === "object" && "remoteAddress" in parent ? (parent as Socket) : socket;
}

/** "ip:port" ("[ip6]:port") of the remote end, or "unknown" when the runtime does not say. */
export function remoteAddressOf(socket: Socket): string {
  let s: Socket | undefined = socket;
  let address = s.remoteAddress;
  let port = s.remotePort;
  if (address === undefined && "encrypted" in socket) {
    s = rawSocketOf(socket as TLSSocket);
    address = s.remoteAddress;
    port = s.remotePort;
  }
  if (address === undefined) return "unknown";
  return address.includes(":") ? `[${address}]:${port ?? "?"}` : `${address}:${port ?? "?"}`;
}

/**
 * The common name of the verified peer certificate, or undefined when there is
 * none or it is ambiguous (several CN attributes).
 */
export function peerCommonName(socket: TLSSocket): string | undefined {
  const cert = socket.getPeerCertificate();
  // Node returns {} (not null) when there is no certificate.
  const cn: unknown = cert?.subject?.CN;
  return typeof cn === "string" ? cn : undefined;
}

/**
 * The serial number of the verified peer certificate as hex (Bun and Deno
 * both give upper-case hex without separators), or undefined when there is
 * no certificate.
 */
export function peerSerialNumber(socket: TLSSocket): string | undefined {
  const serial: unknown = socket.getPeerCertificate()?.serialNumber;
  return typeof serial === "string" && serial.length > 0 ? serial : undefined;
}

/** Peer addresses as written in the cluster file: "host:port", "[ipv6]:port". */
import { isIP } from "node:net";

export interface PeerAddress {
  /** As given, for logs and equality. */
  readonly text: string;
  /** Host name or IP address, without IPv6 brackets. */
  readonly host: string;
  readonly port: number;
}

/** A peer address that cannot be parsed. */
export class BadPeerAddressError extends Error {
  override name = "BadPeerAddressError";
  constructor(readonly address: string, readonly reason: string) {
    super(`peer address ${JSON.stringify(address)} is invalid: ${reason}; write it as host:port or [ipv6]:port`);
  }
}

const HOST_RE = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/;

export function parsePeerAddress(text: string): PeerAddress {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") throw new BadPeerAddressError(text, "an IPv6 address needs the form [addr]:port");
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) throw new BadPeerAddressError(text, `${host} is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) throw new BadPeerAddressError(text, "the port is missing");
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":")) throw new BadPeerAddressError(text, "an IPv6 address must be in brackets: [addr]:port");
    if (isIP(host) === 0 && !HOST_RE.test(host)) throw new BadPeerAddressError(text, `${JSON.stringify(host)} is not a host name or IPv4 address`);
  }
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new BadPeerAddressError(text, `port ${JSON.stringify(portText)} is not a number from 1 to 65535`);
  return { text, host, port };
}

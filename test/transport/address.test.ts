import { describe, expect, test } from "bun:test";
import { BadPeerAddressError, parsePeerAddress } from "../../src/transport/address.ts";
import { LogLimiter } from "../../src/transport/limiter.ts";

describe("peer addresses", () => {
  test("host:port, [ipv6]:port and DNS names parse", () => {
    expect(parsePeerAddress("10.0.0.1:7400")).toEqual({ text: "10.0.0.1:7400", host: "10.0.0.1", port: 7400 });
    expect(parsePeerAddress("[::1]:7400")).toEqual({ text: "[::1]:7400", host: "::1", port: 7400 });
    expect(parsePeerAddress("edge-1.local:1")).toEqual({ text: "edge-1.local:1", host: "edge-1.local", port: 1 });
  });

  test("bad addresses are a BadPeerAddressError", () => {
    for (const bad of ["10.0.0.1", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:7x", "::1:7400", "[::1]7400", "[nope]:1", ":7400", "a b:1"]) {
      expect(() => parsePeerAddress(bad)).toThrow(BadPeerAddressError);
    }
  });
});

describe("log limiter", () => {
  test("allows a burst per interval, then reports how many lines it suppressed", () => {
    let now = 0;
    const limiter = new LogLimiter({ intervalMs: 1000, burst: 2, keysMax: 10, now: () => now });
    expect([limiter.take("k"), limiter.take("k"), limiter.take("k"), limiter.take("k")]).toEqual([0, 0, undefined, undefined]);
    expect(limiter.take("other")).toBe(0);
    now = 1000;
    expect(limiter.take("k")).toBe(2);
    expect(limiter.take("k")).toBe(0);
  });

  test("keeps at most keysMax keys", () => {
    const limiter = new LogLimiter({ intervalMs: 1000, burst: 1, keysMax: 3, now: () => 0 });
    for (let i = 0; i < 100; i++) expect(limiter.take(`k${i}`)).toBe(0);
  });
});

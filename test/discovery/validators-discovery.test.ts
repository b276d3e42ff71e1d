/** The cluster file's "validators" and "discovery" sections: defaults, limits, messages. */
import { expect, test } from "bun:test";
import { parseClusterText } from "../../src/discovery/load.ts";

const node = { id: "n1", peer: "127.0.0.1:7400", api: "http://127.0.0.1:7401" };
const load = (f: object) => parseClusterText(JSON.stringify({ cluster: "c", ...f }), "/virtual/cluster.json");
const problems = (f: object): readonly string[] => {
  const r = load(f);
  if (r.ok) throw new Error("expected the file to be refused");
  return r.error.problems;
};

test("validators get their defaults filled in; none is an empty list", () => {
  const r = load({ nodes: [node], validators: [{ url: "http://127.0.0.1:9000/v", tags: ["orders"] }] });
  expect(r.ok && r.config.validators).toEqual([
    { url: "http://127.0.0.1:9000/v", tags: ["orders"], timeoutMs: 1000, onError: "reject", concurrencyMax: 64, bodyBytesMax: 1 << 20 },
  ]);
  const none = load({ nodes: [node] });
  expect(none.ok && none.config.validators).toEqual([]);
});

test("a validator with a bad URL, no tags, a bad onError or an unknown key is refused by name", () => {
  expect(problems({ nodes: [node], validators: [{ url: "ftp://x/", tags: ["a"] }] })[0]).toContain("validators[0].url: scheme ftp is not http or https");
  expect(problems({ nodes: [node], validators: [{ url: "http://x/", tags: [] }] })[0]).toContain("validators[0].tags");
  expect(problems({ nodes: [node], validators: [{ url: "http://x/", tags: ["a"], onError: "maybe" }] })[0]).toContain('"reject" or "accept"');
  expect(problems({ nodes: [node], validators: [{ url: "http://x/", tags: ["a"], timeout: 5 }] })[0]).toContain('unknown key "timeout" in validators[0]; known keys are url, tags, timeoutMs');
  expect(problems({ nodes: [node], validators: [{ url: "http://x/", tags: ["a"], timeoutMs: 5001 }] })[0]).toContain("validators[0].timeoutMs");
});

test("discovery replaces nodes: defaults, and a file with both or neither is refused", () => {
  const r = load({ discovery: { srv: "_cairn._tcp.store-42.example." } });
  expect(r.ok && r.config.discovery).toEqual({ srv: "_cairn._tcp.store-42.example", intervalMs: 30_000, server: null });
  expect(r.ok && r.config.nodes).toEqual([]);
  const s = load({ discovery: { srv: "_cairn._tcp.x", server: "127.0.0.1:5353", intervalMs: 500 } });
  expect(s.ok && s.config.discovery).toEqual({ srv: "_cairn._tcp.x", intervalMs: 500, server: "127.0.0.1:5353" });
  expect(problems({ nodes: [node], discovery: { srv: "_cairn._tcp.x" } })[0]).toContain('both "nodes" and "discovery"');
  expect(problems({})[0]).toContain('"discovery": {"srv"');
  expect(problems({ discovery: { srv: "not a name" } })[0]).toContain("discovery.srv");
  expect(problems({ discovery: { srv: "_a._tcp.x", server: "0.0.0.0" } })[0]).toContain("discovery.server");
});

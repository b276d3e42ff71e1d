import { describe, expect, test } from "bun:test";
import { parseClusterText } from "../../src/discovery/load.ts";
import { decideFounding, designatedFounder, founders } from "../../src/node/bootstrap.ts";

function config(over: Record<string, unknown>) {
  const nodes = [1, 2, 3].map((i) => ({ id: `n${i}`, peer: `10.0.0.${i}:7400`, api: `https://10.0.0.${i}:7401` }));
  const r = parseClusterText(JSON.stringify({ cluster: "c", nodes, ...over }), "/etc/cairn/cluster.json");
  if (!r.ok) throw r.error;
  return r.config;
}

describe("founding with a witness", () => {
  test("a witness is a founder but never the designated one: a witness leader takes no writes and adds no members", () => {
    const nodes = [1, 2, 3].map((i) => ({ id: `n${i}`, peer: `10.0.0.${i}:7400`, api: `https://10.0.0.${i}:7401`, ...(i === 1 ? { role: "witness" } : {}) }));
    const r = parseClusterText(JSON.stringify({ cluster: "c", nodes }), "/etc/cairn/cluster.json");
    if (!r.ok) throw r.error;
    expect(founders(r.config)).toEqual(["n1", "n2", "n3"]);
    expect(designatedFounder(r.config)).toBe("n2");
    expect(decideFounding({ self: "n1", config: r.config, answers: new Map() }).kind).toBe("join");
  });
});

describe("decideFounding", () => {
  test("a founder the file does not list is named as unreachable for that reason, with what to do", () => {
    const d = decideFounding({ self: "n1", config: config({ founders: ["n1", "n2", "n9"] }), answers: new Map([["n2", { empty: true, clusterId: null }]]) });
    expect(d).toEqual({
      kind: "wait",
      reason: 'waiting for founders n9 to be reachable before founding the cluster (n9 is not in the cluster file, so cannot be reached: fix "founders" or add it)',
    });
  });

  test("founders that are all listed but not reachable yet: just waiting", () => {
    const d = decideFounding({ self: "n1", config: config({ founders: ["n1", "n2", "n3"] }), answers: new Map() });
    expect(d).toEqual({ kind: "wait", reason: "waiting for founders n2, n3 to be reachable before founding the cluster" });
  });
});

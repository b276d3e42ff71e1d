import { describe, expect, test } from "bun:test";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";
import { BadTlsPairError, certHosts, checkPair } from "../../src/transport/pair.ts";

describe("checkPair", () => {
  test("accepts a good pair and refuses a foreign key, another CA, another node's certificate and garbage", async () => {
    const ca = await createCa({ commonName: "ca", days: 10 });
    const other = await createCa({ commonName: "other", days: 10 });
    const n1 = await createNodeCert({ ca, nodeId: "n1", hosts: ["127.0.0.1", "edge.local"], days: 5 });
    const n2 = await createNodeCert({ ca, nodeId: "n2", hosts: [], days: 5 });
    const foreign = await createNodeCert({ ca: other, nodeId: "n1", hosts: [], days: 5 });
    const facts = await checkPair({ ca: ca.cert, cert: n1.cert, key: n1.key }, "n1");
    expect(facts.serial).toMatch(/^[0-9a-f]+$/);
    expect(facts.certNotAfter.getTime()).toBeGreaterThan(Date.now() + 4 * 86_400_000);
    const bad = async (t: { ca: string; cert: string; key: string }, id: string, msg: RegExp) => {
      const e = await checkPair(t, id).then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(BadTlsPairError);
      expect((e as Error).message).toMatch(msg);
    };
    await bad({ ca: ca.cert, cert: n1.cert, key: n2.key }, "n1", /key does not belong/);
    await bad({ ca: ca.cert, cert: foreign.cert, key: foreign.key }, "n1", /not signed by the cluster CA/);
    await bad({ ca: ca.cert, cert: n2.cert, key: n2.key }, "n1", /not for node n1/);
    await bad({ ca: ca.cert, cert: "garbage", key: n1.key }, "n1", /not a PEM certificate/);
    await bad({ ca: ca.cert, cert: n1.cert, key: "garbage" }, "n1", /not a PEM PKCS#8/);
    expect((await certHosts(n1.cert)).sort()).toEqual(["127.0.0.1", "edge.local"]);
  });
});

import { describe, expect, test } from "bun:test";
import { createCa, createNodeCert } from "../../src/transport/certs.ts";
import { expiryMetrics, expiryProblems } from "../../src/transport/expiry.ts";
import { checkPair } from "../../src/transport/pair.ts";

describe("certificate expiry", () => {
  test("a certificate made to expire in 10 days is a problem naming the file and the date; one of 60 days is not", async () => {
    const ca = await createCa({ commonName: "ca", days: 60 });
    const node = await createNodeCert({ ca, nodeId: "n1", hosts: [], days: 10 });
    const facts = await checkPair({ ca: ca.cert, cert: node.cert, key: node.key }, "n1");
    const now = Date.now();
    const certs = [
      { kind: "cert" as const, file: "/h/tls/n1/node.pem", notAfter: facts.certNotAfter },
      { kind: "ca" as const, file: "/h/tls/n1/ca.pem", notAfter: facts.caNotAfter },
    ];
    const problems = expiryProblems(certs, now);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain("/h/tls/n1/node.pem");
    expect(problems[0]).toContain(facts.certNotAfter.toISOString());
    expect(problems[0]).toContain("in 10 days");
    expect(expiryProblems(certs, now + 11 * 86_400_000)[0]).toContain("expired on");
    const m = expiryMetrics(certs, now);
    expect(m).toContain("# TYPE cairn_tls_cert_expiry_seconds gauge");
    const secs = Number(/cairn_tls_cert_expiry_seconds\{kind="cert",file="\/h\/tls\/n1\/node.pem"\} (-?\d+)/.exec(m)?.[1]);
    expect(Math.abs(secs - 10 * 86_400)).toBeLessThan(120);
    expect(m).toMatch(/kind="ca",file="\/h\/tls\/n1\/ca.pem"\} \d+/);
  });
});

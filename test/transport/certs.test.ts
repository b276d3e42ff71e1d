import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { CertParamsError, createCa, createNodeCert } from "../../src/transport/certs.ts";

describe("certificates", () => {
  test("a node certificate is signed by the CA, CN = node id, SANs and both TLS usages", async () => {
    const ca = await createCa({ commonName: "cairn test CA", days: 10 });
    const node = await createNodeCert({ ca, nodeId: "n1", hosts: ["10.0.0.1", "::1", "edge-1.local"], days: 5 });
    expect(node.key).toStartWith("-----BEGIN PRIVATE KEY-----");
    const caCert = new X509Certificate(ca.cert);
    const cert = new X509Certificate(node.cert);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.subject).toBe("CN=n1");
    expect(cert.subjectAltName).toContain("IP Address:10.0.0.1");
    expect(cert.subjectAltName).toContain("DNS:edge-1.local");
    expect(cert.subjectAltName?.toLowerCase()).toMatch(/ip address:(0:0:0:0:0:0:0:1|::1)/);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(4.9);
    expect(days).toBeLessThan(5.1);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  });

  test("bad node ids and validity are refused with CertParamsError", async () => {
    const ca = await createCa({ commonName: "ca", days: 1 });
    await expect(createNodeCert({ ca, nodeId: "../etc/passwd", hosts: [], days: 1 })).rejects.toBeInstanceOf(CertParamsError);
    await expect(createNodeCert({ ca, nodeId: "n1", hosts: [], days: 0 })).rejects.toBeInstanceOf(CertParamsError);
    await expect(createCa({ commonName: "ca", days: 1.5 })).rejects.toBeInstanceOf(CertParamsError);
  });
});

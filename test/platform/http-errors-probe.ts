/**
 * What the HTTP runtime itself answers to requests its parser refuses
 * (they never reach the app), and to plain HTTP on the HTTPS port. Run by
 * test/platform/http-errors.test.ts under Bun and Deno; prints one JSON
 * line. Usage: http-errors-probe.ts <tls.json with {cert, key}>
 */
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { serveHttp } from "../../src/platform/http.ts";

const tls = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as { cert: string; key: string };

export const RAW_CASES: Record<string, string> = {
  malformedRequestLine: "GARBAGE\r\n\r\n",
  badHttpVersion: "GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
  headerTooLarge: `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(100_000)}\r\n\r\n`,
  badHeaderName: "GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
  badContentLength: "POST /changes HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
  plainHttpToHttps: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
};

/** Sends raw bytes, returns what came back until the server closed (or 3 s passed). */
function raw(port: number, data: string): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let out = "";
    const done = () => (clearTimeout(timer), sock.destroy(), resolve(out));
    const timer = setTimeout(done, 3000);
    sock.on("data", (d: Uint8Array) => (out += new TextDecoder("latin1").decode(d)));
    sock.on("close", done);
    sock.on("error", done);
    sock.write(data);
  });
}

function describe(text: string): { status: number | null; body: string; isHttp: boolean } {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  const at = text.indexOf("\r\n\r\n");
  return { status: m ? Number(m[1]) : null, body: at < 0 ? "" : text.slice(at + 4), isHttp: m !== null };
}

const fetch = () => Response.json({ ok: true });
const plain = await serveHttp({ hostname: "127.0.0.1", port: 0, fetch });
const secure = await serveHttp({ hostname: "127.0.0.1", port: 0, fetch, tls });
const out: Record<string, unknown> = {};
for (const [name, bytes] of Object.entries(RAW_CASES)) {
  out[name] = describe(await raw(name === "plainHttpToHttps" ? secure.port : plain.port, bytes));
}
out.servingAfter = describe(await raw(plain.port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
await Promise.all([plain.close(), secure.close()]);
console.log(JSON.stringify(out));

/**
 * A small authoritative DNS server on a loopback UDP port for tests, built
 * on dns-packet: answers SRV, TXT, A and AAAA from a table the test edits.
 * A name with no records gets NXDOMAIN; `fail = true` makes it answer
 * SERVFAIL to everything.
 */
import { createSocket, type Socket } from "node:dgram";
import * as packet from "dns-packet";

export interface SrvTarget {
  readonly port: number;
  readonly target: string;
}

export class TestDns {
  readonly srv = new Map<string, SrvTarget[]>();
  readonly txt = new Map<string, string[]>();
  readonly a = new Map<string, string>();
  fail = false;
  queries = 0;
  private constructor(
    private readonly sock: Socket,
    readonly port: number,
  ) {}

  static async start(): Promise<TestDns> {
    const sock = createSocket("udp4");
    await new Promise<void>((res, rej) => {
      sock.once("error", rej);
      sock.bind(0, "127.0.0.1", () => res());
    });
    const dns = new TestDns(sock, sock.address().port);
    sock.on("message", (msg, rinfo) => dns.answer(msg, rinfo.port, rinfo.address));
    return dns;
  }

  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  close(): Promise<void> {
    return new Promise((res) => this.sock.close(() => res()));
  }

  private answer(msg: Buffer, port: number, address: string): void {
    let q: packet.Packet;
    try {
      q = packet.decode(msg);
    } catch {
      return;
    }
    this.queries++;
    const question = q.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase().replace(/\.$/, "");
    const answers: packet.Answer[] = [];
    if (question.type === "SRV") {
      for (const t of this.srv.get(name) ?? []) answers.push({ type: "SRV", name: question.name, ttl: 1, data: { priority: 10, weight: 10, port: t.port, target: t.target } });
    } else if (question.type === "TXT") {
      const t = this.txt.get(name);
      if (t) answers.push({ type: "TXT", name: question.name, ttl: 1, data: t });
    } else if (question.type === "A") {
      const a = this.a.get(name);
      if (a) answers.push({ type: "A", name: question.name, ttl: 1, data: a });
    }
    const known = this.srv.has(name) || this.txt.has(name) || this.a.has(name);
    const rcode = this.fail ? "SERVFAIL" : known ? "NOERROR" : "NXDOMAIN";
    const flags = packet.AUTHORITATIVE_ANSWER | (rcode === "SERVFAIL" ? 2 : rcode === "NXDOMAIN" ? 3 : 0);
    const out = packet.encode({ id: q.id, type: "response", flags, questions: q.questions, answers: this.fail ? [] : answers });
    this.sock.send(out, port, address);
  }
}
